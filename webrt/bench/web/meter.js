// Peak memory of whatever engine runs in this page, measured the same way for all of them:
// GPU buffer bytes (live bytes of every GPUDevice.createBuffer until destroy), wasm memory (every
// WebAssembly.Memory the page creates or instantiates) and the JS heap (sampled; Chromium's
// performance.memory, precise with --enable-precise-memory-info).

export const meter = {
  gpuLive: 0,
  gpuPeak: 0,
  jsHeapPeak: 0,
  memories: new Set(),
  /** Take a JS heap sample; call often (it is cheap). */
  sample() {
    const used = performance.memory?.usedJSHeapSize ?? 0;
    if (used > this.jsHeapPeak) this.jsHeapPeak = used;
  },
  /** wasm memory only grows, so its current size is its peak. */
  get wasmBytes() {
    let total = 0;
    for (const m of this.memories) total += m.buffer.byteLength;
    return total;
  },
  report() {
    this.sample();
    return { js_heap_peak_bytes: this.jsHeapPeak, gpu_buffer_peak_bytes: this.gpuPeak, wasm_memory_bytes: this.wasmBytes };
  },
};

if (globalThis.GPUDevice) {
  const createBuffer = GPUDevice.prototype.createBuffer;
  GPUDevice.prototype.createBuffer = function (descriptor) {
    const buffer = createBuffer.call(this, descriptor);
    const size = buffer.size;
    meter.gpuLive += size;
    meter.gpuPeak = Math.max(meter.gpuPeak, meter.gpuLive);
    const destroy = buffer.destroy;
    let destroyed = false;
    buffer.destroy = function () {
      if (!destroyed) meter.gpuLive -= size;
      destroyed = true;
      return destroy.call(this);
    };
    return buffer;
  };
}

const remember = (exports) => {
  for (const value of Object.values(exports ?? {})) if (value instanceof WebAssembly.Memory) meter.memories.add(value);
};
const Memory = WebAssembly.Memory;
WebAssembly.Memory = new Proxy(Memory, {
  construct(target, args) {
    const memory = new target(...args);
    meter.memories.add(memory);
    return memory;
  },
});
const instantiate = WebAssembly.instantiate;
WebAssembly.instantiate = async function (source, imports) {
  const result = await instantiate.call(this, source, imports);
  remember((result.instance ?? result).exports);
  return result;
};
const instantiateStreaming = WebAssembly.instantiateStreaming;
if (instantiateStreaming) {
  WebAssembly.instantiateStreaming = async function (source, imports) {
    const result = await instantiateStreaming.call(this, source, imports);
    remember(result.instance.exports);
    return result;
  };
}
