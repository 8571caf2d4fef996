// A wasm thread-pool worker: instantiates the threads build of kernels.wasm on the shared memory,
// takes its own stack, and then lives inside webrt_worker_loop (webrt/compile/wasm_support.c),
// which sleeps on an atomic until the calling thread publishes a parallel loop.

self.onmessage = async ({ data: { module, memory, stackTop } }) => {
  try {
    const instance = await WebAssembly.instantiate(module, { env: { memory } });
    instance.exports.__stack_pointer.value = stackTop;
    self.postMessage({ ready: true });
    instance.exports.webrt_worker_loop(0); // never returns
  } catch (err) {
    self.postMessage({ error: `${err.name}: ${err.message}` });
  }
};
