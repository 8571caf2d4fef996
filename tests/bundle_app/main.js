// A bundled app that uses webrt from npm: the page talks to an engine in a Web Worker.
// Built with esbuild (tests/test_npm_package.py); the worker and the wasm thread pool's script are
// found next to this bundle through import.meta.url, so the app works from any folder it is served at.

import { createWorkerEngine, InputError } from "webrt";

const params = new URLSearchParams(location.search);
const model = new URL(params.get("model") ?? "./model/", location.href).href;
const threads = Number(params.get("threads") ?? 1);
const question = params.get("q") ?? "What is the capital of France?";
const answer = document.querySelector("#answer");

async function run() {
  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  const engine = await createWorkerEngine(worker, model, { device: "wasm", threads });
  let rejected = null;
  try {
    await engine.chat.completions.create({ messages: [] });
  } catch (err) {
    rejected = err instanceof InputError ? err.name : `not an InputError: ${err}`; // named errors survive the worker
  }
  let text = "";
  let last = null;
  const stream = await engine.chat.completions.create({
    messages: [{ role: "user", content: question }], max_tokens: 16, temperature: 0, stream: true });
  for await (const chunk of stream) {
    text += chunk.choices[0].delta.content ?? "";
    answer.textContent = text;
    last = chunk;
  }
  const info = engine.info;
  await engine.unload();
  return { text, finish_reason: last.choices[0].finish_reason, usage: last.usage, device: info.device,
           threads: info.threads, threads_reason: info.threads_reason, rejected };
}

window.appResult = run().catch((err) => ({ error: `${err.name}: ${err.message}` }));
