// The Python page of a site built with `webrt build-site --python`: load Pyodide's core and the
// webrt_web wheel from this site (no CDN), register the JS shell for it, then run the cell's Python.
// Output is only ever inserted as text. The page's state is on <body data-state>: starting, ready,
// running, error (Python could not start). A run's own failure shows as its output's last line.

import { createWorkerEngine } from "../worker_engine.js";

const $ = (id) => document.getElementById(id);
const site = new URL("./", location.href);
const python = new URL(document.body.dataset.python, site); // python.<hash>/: pyodide/ and the wheel

// The preloaded example; MODEL becomes the chosen model's folder.
const EXAMPLE = `from webrt_web import create_engine

engine = await create_engine(MODEL, device="auto")
messages = [{"role": "user", "content": "What is the capital of France?"}]
async for chunk in await engine.chat.completions.create(messages=messages, stream=True,
                                                       temperature=0, max_tokens=32):
    print(chunk["choices"][0]["delta"].get("content", ""), end="", flush=True)
`;

let pyodide = null;
let running = null; // the globals of the run in progress, so Stop can find its engines

// Python that calls one method of every engine a run's code left in its globals
const eachEngine = (method) => `
from webrt_web import Engine
for value in list(globals().values()):
    if isinstance(value, Engine) and not value.unloaded:
        await value.${method}()
`;

function setState(state) {
  document.body.dataset.state = state;
  $("run").disabled = state !== "ready";
  $("stop").disabled = state !== "running";
}

/** Python's stdout and stderr, decoded as they come (a streamed reply shows token by token). */
function writer(className) {
  const decoder = new TextDecoder();
  return {
    write: (bytes) => {
      const text = decoder.decode(bytes, { stream: true });
      const output = $("output");
      const last = output.lastChild;
      if (last && last.className === className) last.textContent += text;
      else output.append(Object.assign(document.createElement("span"), { className, textContent: text }));
      return bytes.length;
    },
  };
}

async function chooseModel() {
  const response = await fetch("site.json", { cache: "no-cache" });
  if (!response.ok) throw new Error(`site.json gave HTTP ${response.status}`);
  const { models } = await response.json();
  const wanted = new URLSearchParams(location.search).get("model");
  return (models.find((m) => m.name === wanted || m.path === wanted) ?? models[0]).path;
}

async function start() {
  setState("starting");
  const model = await chooseModel();
  $("code").value = EXAMPLE.replace("MODEL", JSON.stringify(model));
  const { loadPyodide } = await import(new URL("pyodide/pyodide.mjs", python).href);
  pyodide = await loadPyodide({ indexURL: new URL("pyodide/", python).href });
  pyodide.setStdout(writer("out"));
  pyodide.setStderr(writer("err"));
  pyodide.registerJsModule("webrt_shell", { createWorkerEngine, workerUrl: new URL("../worker.js", import.meta.url).href });
  await pyodide.loadPackage(new URL(document.body.dataset.wheel, python).href);
  $("status").textContent = `Python ${pyodide.version} ready; the example loads ${model} and streams a reply.`;
  setState("ready");
}

/** Show what the code printed without a newline or a flush (Python buffers it). */
const flush = () => pyodide.runPython("import sys\nsys.stdout.flush()\nsys.stderr.flush()");

/** Run the cell in a fresh namespace; the engines it made are unloaded when it ends (their Workers
 * and memory go with them), so runs never pile up models. */
async function run() {
  setState("running");
  $("output").replaceChildren();
  $("status").textContent = "Running…";
  const globals = pyodide.globals.get("dict")();
  running = globals;
  const started = performance.now();
  try {
    await pyodide.runPythonAsync($("code").value, { globals });
    flush();
    $("status").textContent = `Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`;
  } catch (err) {
    flush();
    writer("problem").write(new TextEncoder().encode(`\n${err.message}`));
    $("status").textContent = "The code raised an error (shown below).";
  } finally {
    running = null;
    await pyodide.runPythonAsync(eachEngine("unload"), { globals }).catch(() => {});
    globals.destroy();
    setState("ready");
  }
}

/** Stop: interrupt every engine of the running code (a streamed reply then ends with "abort"). */
async function stop() {
  if (running) await pyodide.runPythonAsync(eachEngine("interrupt"), { globals: running });
}

$("run").addEventListener("click", run);
$("stop").addEventListener("click", stop);
start().catch((err) => {
  $("status").textContent = `Python could not start: ${err.message}`;
  setState("error");
});
