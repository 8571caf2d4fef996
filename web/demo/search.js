// The search page of a site built by `webrt build-site`: embed the bundled documents once with an
// embedding model in a Web Worker, then rank them by cosine similarity against each query. Results
// are only ever inserted as text. The page's state is on <body data-state>: starting, indexing,
// ready, searching, error.

import { createWorkerEngine } from "../worker_engine.js";
import { DOCUMENTS } from "./search_docs.js";

const $ = (id) => document.getElementById(id);
let engine = null;
let documentVectors = [];

function setState(state, status) {
  document.body.dataset.state = state;
  if (status !== undefined) $("status").textContent = status;
  const ready = state === "ready";
  $("query").disabled = !ready;
  $("go").disabled = !ready;
}

const unit = (v) => {
  const norm = Math.max(Math.hypot(...v), 1e-12);
  return v.map((x) => x / norm);
};
const dot = (a, b) => a.reduce((sum, x, i) => sum + x * b[i], 0);

async function load(model, device) {
  setState("starting", `Loading ${model.name}…`);
  await engine?.unload();
  engine = await createWorkerEngine(new Worker(new URL("../worker.js", import.meta.url), { type: "module" }),
    model.path, { device, cache: `webrt-files:${new URL("./", location.href).pathname}`, onProgress: ({ stage, loaded, total }) => {
      $("status").textContent = stage === "download" ? `Downloading ${model.name}: ${Math.round((100 * loaded) / total)}%` : `${stage}…`;
    } });
  setState("indexing", `Embedding ${DOCUMENTS.length} documents…`);
  const { data, usage } = await engine.embeddings.create({ input: DOCUMENTS });
  documentVectors = data.map((d) => unit(d.embedding));
  const where = engine.info.device === "wasm" ? `wasm, ${engine.info.threads} thread(s)` : engine.info.device;
  setState("ready", `${DOCUMENTS.length} documents indexed in ${Math.round(usage.extra.total_ms)} ms on ${where}. Type a query.`);
}

async function search(query) {
  setState("searching", "Searching…");
  const { data, usage } = await engine.embeddings.create({ input: query });
  const q = unit(data[0].embedding);
  const ranked = DOCUMENTS.map((text, i) => ({ text, score: dot(q, documentVectors[i]) })).sort((a, b) => b.score - a.score);
  $("results").replaceChildren(...ranked.slice(0, 5).map(({ text, score }) => {
    const item = document.createElement("li");
    item.append(Object.assign(document.createElement("span"), { className: "score", textContent: score.toFixed(3) }), text);
    return item;
  }));
  setState("ready", `Ranked ${DOCUMENTS.length} documents in ${Math.round(usage.extra.total_ms)} ms.`);
}

async function start() {
  const response = await fetch("site.json", { cache: "no-cache" });
  if (!response.ok) throw new Error(`site.json gave HTTP ${response.status}: is this a site built by webrt build-site?`);
  const models = (await response.json()).models.filter((m) => m.task === "embedding");
  if (!models.length) throw new Error("this site holds no embedding model: build it with one (webrt build-site MODEL...)");
  $("model").replaceChildren(...models.map((m, i) => Object.assign(document.createElement("option"), { value: i, textContent: m.name })));
  const params = new URLSearchParams(location.search);
  if (params.get("device")) $("device").value = params.get("device");
  const chosen = () => models[Number($("model").value)];
  const reload = () => load(chosen(), $("device").value).catch(fail);
  $("model").onchange = reload;
  $("device").onchange = reload;
  $("search").onsubmit = (event) => {
    event.preventDefault();
    const query = $("query").value.trim();
    if (query) search(query).catch(fail);
  };
  await load(chosen(), $("device").value);
}

function fail(err) {
  setState("error", `${err.name}: ${err.message}`);
}

start().catch(fail);
