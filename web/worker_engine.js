// The page side of an engine that runs in a Web Worker (worker.js): the same API as createEngine.
//
//   const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" }); // it imports "webrt/worker"
//   const engine = await createWorkerEngine(worker, "./model/", { onProgress });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true })) ...

import { resolveDependencyUrls } from "./dependencies.js";
import * as errors from "./errors.js";

function rebuild({ name, message }) {
  const Kind = errors[name] && name !== "WebrtError" ? errors[name] : errors.WebrtError;
  const err = new Kind(message);
  err.name = name;
  return err;
}

class WorkerClient {
  constructor(worker) {
    this.worker = worker;
    this.next = 0;
    this.pending = new Map();
    worker.onmessage = ({ data }) => this.pending.get(data.id)?.(data);
    // a worker that fails to start (e.g. a module that does not load) fails every pending call
    worker.onerror = (event) => {
      const err = new errors.WebrtError(`the engine worker failed: ${event.message ?? "it could not start"}`);
      for (const settle of this.pending.values()) settle({ error: { name: "WebrtError", message: err.message } });
      this.pending.clear();
    };
  }

  /** Call a method; onMessage sees progress and chunk messages. Resolves with the result. */
  call(method, args, onMessage = () => {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, (data) => {
        if ("progress" in data || "chunk" in data) return onMessage(data);
        this.pending.delete(id);
        if (data.error) reject(rebuild(data.error));
        else resolve(data.result);
      });
      this.worker.postMessage({ id, method, args });
    });
  }

  /** A streaming call as an async iterator of chunks. */
  async *stream(method, args) {
    const queue = [];
    let wake = null;
    let finished = false;
    let failure = null;
    this.call(method, args, ({ chunk }) => {
      queue.push(chunk);
      wake?.();
    }).then(() => { finished = true; wake?.(); }, (err) => { failure = err; finished = true; wake?.(); });
    while (true) {
      if (queue.length) {
        yield queue.shift();
      } else if (finished) {
        if (failure) throw failure;
        return;
      } else {
        await new Promise((resolve) => { wake = resolve; });
        wake = null;
      }
    }
  }
}

export async function createWorkerEngine(worker, url, { onProgress = () => {}, ...options } = {}) {
  const client = new WorkerClient(worker);
  const absolute = new URL(url, location.href).href; // the worker resolves against its own URL
  const info = await client.call("load", { url: absolute, options, dependencies: resolveDependencyUrls() },
    ({ progress }) => onProgress(progress));
  // an AbortSignal cannot be posted to the worker: its abort becomes an interrupt there
  const create = (method) => async ({ signal, ...request }) => {
    signal?.addEventListener("abort", () => client.call("interrupt"), { once: true });
    return request.stream ? client.stream(method, { request }) : client.call(method, { request });
  };
  return {
    info,
    chat: { completions: { create: create("chat") } },
    completions: { create: create("completion") },
    embeddings: { create: (request) => client.call("embeddings", { request }) },
    interrupt: () => client.call("interrupt"),
    resetChat: () => client.call("resetChat"),
    unload: async () => {
      await client.call("unload");
      worker.terminate();
    },
  };
}
