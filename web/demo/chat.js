// The chat page of a site built by `webrt build-site`: pick a model among those in site.json, check
// that it fits, load it into an engine in a Web Worker (files cached in the Cache API), then chat
// with streamed replies. The page's state is on <body data-state>: starting, idle, wont-fit,
// loading, ready, generating, error.

import { cachedBytes, dropStale } from "../file_cache.js";
import { createWorkerEngine } from "../worker_engine.js";
import { checkFit } from "./fit.js";
import { addMessage, formatBackend, formatBytes, formatProgress, renderStream, showLines } from "./view.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const siteBase = new URL("./", location.href); // the folder of this page: every URL is relative to it
// one cache per site, so two sites on one origin never drop each other's files
const cacheName = `webrt-files:${siteBase.pathname}`;

let site = null;
let engine = null;
let loadedKey = null;
let history = []; // the conversation, without the system prompt
let conversation = 0; // bumped by "New chat", so a reply still streaming then stays out of the new one
let busy = false;

function setState(state) {
  document.body.dataset.state = state;
  const working = state === "loading" || state === "generating" || state === "starting";
  $("load").disabled = working || state === "wont-fit";
  $("model").disabled = working;
  $("device").disabled = working;
  $("send").disabled = working || state === "wont-fit";
  $("stop").disabled = state !== "generating";
}

function showError(message) {
  showLines($("error"), message ? [message] : []);
}

const chosenModel = () => site.models[Number($("model").value)];
const chosenDevice = () => $("device").value;
const modelUrl = (model) => new URL(model.path, siteBase).href;

async function fetchManifest(model) {
  const response = await fetch(new URL("manifest.json", modelUrl(model)), { cache: "no-cache" });
  if (!response.ok) throw new Error(`${model.path}manifest.json gave HTTP ${response.status}`);
  return response.json();
}

/** Storage and device limits against the chosen model; shows the result and returns it. */
async function refreshFit() {
  const model = chosenModel();
  const device = chosenDevice();
  const manifest = await fetchManifest(model);
  const files = [...manifest.weights.shards, ...(manifest.files ?? []), ...(manifest.wasm ? [manifest.wasm] : [])];
  const cached = await cachedBytes(cacheName, files.map((f) => new URL(f.file, modelUrl(model)).href));
  const fit = await checkFit(manifest, device, cached);
  showLines($("fit"), fit.problems, "problem");
  $("fit").append(...fit.notes.map((line) => Object.assign(document.createElement("p"), { textContent: line })));
  return fit;
}

const isBaseModel = (model) => model.chat === false; // no chat template: a completion box

async function onChoice() {
  if (busy) return;
  $("prompt").placeholder = isBaseModel(chosenModel())
    ? "A base model (no chat template): write the start of a text, and it is continued"
    : "Ask something, then press Enter";
  setState("starting");
  try {
    const fit = await refreshFit();
    setState(engine && loadedKey === choiceKey() ? "ready" : fit.ok ? "idle" : "wont-fit");
  } catch (err) {
    showError(`Could not check the model: ${err.message}`);
    setState("error");
  }
}

const choiceKey = () => `${$("model").value}|${chosenDevice()}`;

function onProgress(progress, started) {
  const bar = $("progress");
  let speed = 0;
  if (progress.stage === "download") {
    bar.max = progress.total || 1;
    bar.value = progress.loaded;
    const seconds = (performance.now() - started) / 1000;
    speed = seconds > 0 ? (progress.loaded - (progress.cached ?? 0)) / seconds : 0;
  } else if (progress.stage === "ready") {
    bar.max = 1;
    bar.value = 1;
  } else {
    bar.removeAttribute("value"); // pipelines, tuning: no byte count, an indeterminate bar
  }
  $("progress-text").textContent = formatProgress(progress, speed);
}

/** Load the chosen model into a worker engine (once per model and device); true when ready. */
async function load() {
  if (engine && loadedKey === choiceKey()) return true;
  setState("loading");
  showError("");
  try {
    if (engine) await engine.unload();
    engine = null;
    const fit = await refreshFit();
    if (!fit.ok) {
      setState("wont-fit");
      return false;
    }
    const model = chosenModel();
    const started = performance.now();
    const worker = new Worker(new URL("../worker.js", import.meta.url), { type: "module" });
    engine = await createWorkerEngine(worker, modelUrl(model), {
      device: chosenDevice(), cache: cacheName, onProgress: (p) => onProgress(p, started),
    });
    loadedKey = choiceKey();
    $("backend").textContent = formatBackend(engine.info);
    $("progress-text").textContent = `ready: ${model.name} loaded in ${((performance.now() - started) / 1000).toFixed(1)} s`;
    setState("ready");
    return true;
  } catch (err) {
    engine = null;
    showError(`Loading failed: ${err.name}: ${err.message}`);
    setState("error");
    return false;
  }
}

function settings() {
  const temperature = Number($("temperature").value);
  const maxTokens = Math.floor(Number($("max-tokens").value));
  return {
    temperature: Number.isFinite(temperature) && temperature >= 0 ? temperature : 0,
    max_tokens: maxTokens >= 1 ? maxTokens : 256,
    system: $("system").value.trim(),
  };
}

async function send(text) {
  if (busy) return;
  busy = true;
  try {
    if (!(await load())) return;
    const { temperature, max_tokens, system } = settings();
    if (isBaseModel(chosenModel())) {
      await complete(text, { temperature, max_tokens });
      return;
    }
    const current = conversation;
    history.push({ role: "user", content: text });
    addMessage($("messages"), "user", text);
    const reply = addMessage($("messages"), "assistant");
    const messages = system ? [{ role: "system", content: system }, ...history] : history;
    setState("generating");
    try {
      const stream = await engine.chat.completions.create({ messages, stream: true, temperature, max_tokens });
      const { text: answer } = await renderStream(stream, reply);
      if (current === conversation) history.push({ role: "assistant", content: answer });
    } catch (err) {
      reply.stats.textContent = `${err.name}: ${err.message}`;
      reply.stats.classList.add("problem");
      if (current === conversation) history.pop(); // unanswered: not part of the next prompt
    }
    setState("ready");
  } finally {
    busy = false;
  }
}

/** A base model continues the text: one completion per Send, no conversation kept. */
async function complete(text, settings) {
  addMessage($("messages"), "user", text);
  const reply = addMessage($("messages"), "assistant");
  setState("generating");
  try {
    await renderStream(await engine.completions.create({ prompt: text, stream: true, ...settings }), reply);
  } catch (err) {
    reply.stats.textContent = `${err.name}: ${err.message}`;
    reply.stats.classList.add("problem");
  }
  setState("ready");
}

async function newChat() {
  conversation += 1;
  if (engine && busy) await engine.interrupt();
  history = [];
  $("messages").replaceChildren();
  if (engine && !busy) await engine.resetChat();
}

function showIsolation() {
  $("isolation").textContent = globalThis.crossOriginIsolated
    ? `Cross-origin isolated: wasm may use threads (this device has ${navigator.hardwareConcurrency} cores).`
    : "Not cross-origin isolated (the server sends no COOP/COEP headers): wasm threads are off and runs " +
      "on one thread. Serve the site with `webrt serve` to turn them on.";
}

async function start() {
  setState("starting");
  showIsolation();
  const response = await fetch("site.json", { cache: "no-cache" });
  if (!response.ok) throw new Error(`site.json gave HTTP ${response.status}: is this a site built by webrt build-site?`);
  site = await response.json();
  const wanted = params.get("model");
  $("model").replaceChildren(...site.models.map((m, i) => {
    const option = new Option(`${m.name} · ${m.quantization} · ${formatBytes(m.download_bytes)}`, String(i));
    option.selected = wanted !== null && (m.name === wanted || m.path === wanted);
    option.hidden = option.disabled = m.task === "embedding"; // search.html's, not a chat model
    return option;
  }));
  if (["auto", "webgpu", "wasm"].includes(params.get("device"))) $("device").value = params.get("device");
  // files of models this site no longer holds (older versions) only take up space
  await dropStale(cacheName, site.models.map(modelUrl));

  $("model").addEventListener("change", onChoice);
  $("device").addEventListener("change", onChoice);
  $("load").addEventListener("click", () => { if (!busy) load(); });
  $("stop").addEventListener("click", () => engine?.interrupt());
  $("new-chat").addEventListener("click", newChat);
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || busy) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  await onChoice();
}

start().catch((err) => {
  showError(`The page could not start: ${err.message}`);
  setState("error");
});
