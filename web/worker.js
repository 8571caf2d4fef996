// The engine inside a Web Worker, so the page stays responsive. Pair it with createWorkerEngine
// (worker_engine.js), which gives the page the same API as createEngine.
//
// Messages in:  {id, method: "load" | "chat" | "completion" | "embeddings" | "interrupt" | "resetChat" | "unload", args}
// Messages out: {id, progress} while loading, {id, chunk} while streaming, then {id, result} or
//               {id, error: {name, message}}.

import { useDependencyUrls } from "./dependencies.js";
import { createEngine } from "./engine.js";
import { useFileCache } from "./loader.js";

let engine = null;

const post = (message) => self.postMessage(message);

// wasm kernels run synchronously, so a reply's steps never leave this task: without a task
// boundary between chunks, an "interrupt" message would wait until the whole reply was done
const channel = new MessageChannel();
const nextTask = () => new Promise((resolve) => {
  channel.port1.onmessage = resolve;
  channel.port2.postMessage(null);
});

async function handle(id, method, args) {
  switch (method) {
    case "load":
      useDependencyUrls(args.dependencies);
      useFileCache(args.options?.cache); // a Cache API name: keep the files, resume downloads
      engine = await createEngine(args.url, { ...args.options, onProgress: (progress) => post({ id, progress }) });
      return engine.info;
    case "chat":
    case "completion": {
      const api = method === "chat" ? engine.chat.completions : engine.completions;
      const result = await api.create(args.request);
      if (!args.request.stream) return result;
      for await (const chunk of result) {
        post({ id, chunk });
        await nextTask();
      }
      return null;
    }
    case "embeddings":
      return engine.embeddings.create(args.request);
    case "interrupt":
      return engine?.interrupt();
    case "resetChat":
      return engine?.resetChat();
    case "unload":
      engine?.unload();
      engine = null;
      return null;
    default:
      throw new Error(`unknown method ${method}`);
  }
}

self.onmessage = async ({ data: { id, method, args } }) => {
  try {
    post({ id, result: await handle(id, method, args ?? {}) });
  } catch (err) {
    post({ id, error: { name: err.name, message: err.message } });
  }
};
