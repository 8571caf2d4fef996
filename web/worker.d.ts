// Types for worker.js: a module that makes the Worker it runs in an engine host for
// createWorkerEngine (see index.d.ts). It exports nothing; import it for its effect:
//   // worker.js of your app, started with new Worker(new URL("./worker.js", import.meta.url), { type: "module" })
//   import "webrt/worker";
export {};
