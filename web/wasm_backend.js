// WebAssembly backend: TVM-compiled kernels (kernels.wasm, see webrt/compile/wasm.py) called with
// TVM's packed calling convention. Tensors live in the module's memory, 64-byte aligned.
//
//   TVMFFIAny (16 bytes): i32 type index (1 = int, 7 = DLTensor*), i32 0, then a 64-bit value.
//   DLTensor on wasm32 (40 bytes): data@0, device {type 1 = CPU, id}@4, ndim@12,
//   dtype {code, bits, lanes}@16, shape*@20 (int64[ndim]), strides*@24 (null), byte_offset@32.

import { largestFittingWindow, stateBytes, weightBytes } from "./context_window.js";
import { DeviceError, OutOfMemoryError } from "./errors.js";

const DTYPE_CODES = { int32: [0, 32], uint32: [1, 32], float32: [2, 32] };
const SCRATCH_BYTES = 1 << 16;

// A module with one SIMD instruction (i8x16.splat): validates only where wasm SIMD exists.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0,
  10, 8, 1, 6, 0, 65, 0, 253, 15, 11]);
// The same with f32x4.relaxed_madd (0xfd 0x105) on three splats: validates only where relaxed SIMD exists.
const RELAXED_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0,
  10, 19, 1, 17, 0, 65, 0, 253, 15, 65, 0, 253, 15, 65, 0, 253, 15, 253, 133, 2, 11]);
const WORKER_STACK_BYTES = 512 * 1024;
const MAX_PAGES = 65535; // as linked (webrt/compile/wasm.py MAX_MEMORY)

// A pointer an export returns, as an offset into memory: exports return i32, which JS reads as
// signed, so past 2 GiB of memory (wasm32 has 4) an address would come back negative.
const wasmPointer = (value) => value >>> 0;

/** Shared wasm memory is allowed: a crossOriginIsolated page, or a runtime without pages (Deno),
 * which has no such property and always allows it. */
const sharedMemoryAllowed = () => globalThis.crossOriginIsolated ?? typeof SharedArrayBuffer === "function";

/**
 * Which wasm build to run, and on how many threads. `threads` is the caller's wish (default: the
 * number of cores); the threads build needs shared memory, i.e. a crossOriginIsolated page. Where
 * the browser validates relaxed SIMD, the artifact's relaxed builds (fused multiply-adds) replace
 * simd and threads. `force` names a build ("simd", "threads", "scalar", "relaxed", "relaxed_threads")
 * for diagnostics and tests. Returns {build (a manifest record), name, threads, reason}.
 */
export function chooseWasmBuild(wasm, threads, force) {
  const cores = globalThis.navigator?.hardwareConcurrency ?? 1;
  const wanted = threads ?? cores;
  if (force != null) return forcedBuild(wasm, force, wanted);
  if (!WebAssembly.validate(SIMD_PROBE)) {
    if (!wasm.scalar) throw new DeviceError("this browser has no WebAssembly SIMD and the artifact has no scalar build");
    return { build: wasm.scalar, name: "scalar", threads: 1, reason: "no WebAssembly SIMD in this browser: scalar kernels, 1 thread" };
  }
  const relaxed = WebAssembly.validate(RELAXED_PROBE);
  // the one-thread build: relaxed where the browser and the artifact have it
  const single = (why) => (relaxed && wasm.relaxed
    ? { build: wasm.relaxed, name: "relaxed", threads: 1, reason: `${why}, relaxed SIMD` }
    : { build: wasm, name: "simd", threads: 1, reason: why });
  if (wanted <= 1) return single(`1 thread ${threads == null ? `(${cores} core)` : "(requested)"}`);
  if (!wasm.threads) return single("the artifact has no threads build: 1 thread");
  if (!sharedMemoryAllowed()) {
    return single("1 thread: the page is not crossOriginIsolated (serve it with COOP same-origin and COEP require-corp, e.g. webrt serve)");
  }
  const why = `${wanted} threads ${threads == null ? "(one per core)" : "(requested)"}`;
  return relaxed && wasm.relaxed_threads
    ? { build: wasm.relaxed_threads, name: "relaxed_threads", threads: wanted, reason: `${why}, relaxed SIMD` }
    : { build: wasm.threads, name: "threads", threads: wanted, reason: why };
}

function forcedBuild(wasm, force, wanted) {
  const builds = { simd: wasm, threads: wasm.threads, scalar: wasm.scalar, relaxed: wasm.relaxed, relaxed_threads: wasm.relaxed_threads };
  if (!(force in builds)) throw new DeviceError(`wasmBuild must be one of ${Object.keys(builds).join(", ")}, got ${JSON.stringify(force)}`);
  if (!builds[force]) throw new DeviceError(`the artifact has no ${force} wasm build`);
  const parallel = force === "threads" || force === "relaxed_threads";
  if (parallel && !sharedMemoryAllowed()) throw new DeviceError(`the ${force} build needs a crossOriginIsolated page`);
  if (force.startsWith("relaxed") && !WebAssembly.validate(RELAXED_PROBE)) {
    throw new DeviceError(`the ${force} build needs WebAssembly relaxed SIMD, which this browser does not have`);
  }
  const threads = parallel ? wanted : 1;
  return { build: builds[force], name: force, threads, reason: `the ${force} build (forced), ${threads} thread${threads > 1 ? "s" : ""}` };
}

const WASM32_BYTES = 4 * 1024 ** 3;

/**
 * Weights and state live in one wasm32 memory: refuse up front what cannot fit in 4 GiB, at the
 * sizes loadWasm places for the page's `window` (a full-attention KV cache and the RoPE tables get
 * that many rows, not the artifact's context_window).
 */
export function checkWasmFits(manifest, window) {
  const need = (w) => ({
    weights: manifest.weights.tensors.reduce((sum, t) => sum + weightBytes(manifest, t, w), 0),
    state: (manifest.state ?? []).reduce((sum, s) => sum + stateBytes(manifest, s, w), 0),
  });
  const budget = WASM32_BYTES * 0.9; // the rest: the kernels, their working memory and the plan's tensors
  const fits = (w) => {
    const { weights, state } = need(w);
    return weights + state <= budget;
  };
  if (fits(window)) return;
  const { weights, state } = need(window);
  const gib = (n) => (n / 1024 ** 3).toFixed(2);
  const smaller = largestFittingWindow(window, fits);
  throw new OutOfMemoryError(`the model needs ${gib(weights)} GiB of weights and ${gib(state)} GiB of KV cache` +
    `${window != null ? ` at contextWindow ${window}` : ""}, more than the ${gib(budget)} GiB it may take of the 4 GiB ` +
    `a wasm32 memory can hold: ${smaller != null ? `load it with contextWindow ${smaller} or less, ` : ""}` +
    "compile it with --quantization q4f32 or a smaller --context-window, or use WebGPU");
}

/**
 * Bytes of a call's argument block (WasmKernels.pack) for its arguments: null for an integer, a
 * tensor's rank otherwise.
 */
export function argBlockBytes(ranks) {
  return 16 * ranks.length + 16 + ranks.reduce((sum, rank) => sum + (rank === null ? 0 : 40 + 8 * rank), 0);
}

export class WasmKernels {
  /** bytes: the chosen build; threads > 1 only with the threads build (see chooseWasmBuild). */
  static async create(bytes, { threads = 1 } = {}) {
    const module = await WebAssembly.compile(bytes);
    // the threads build imports its (shared) memory; the others bring their own
    if (!WebAssembly.Module.imports(module).some((i) => i.kind === "memory")) {
      if (threads > 1) throw new DeviceError("only the threads build of the kernels runs on several threads");
      const instance = await WebAssembly.instantiate(module, {});
      return new WasmKernels(instance.exports, instance.exports.memory, []);
    }
    const memory = new WebAssembly.Memory({ initial: 256, maximum: MAX_PAGES, shared: true });
    const instance = await WebAssembly.instantiate(module, { env: { memory } });
    const kernels = new WasmKernels(instance.exports, memory, []);
    // threads - 1 workers join the calling thread; each gets its own stack in the shared memory
    kernels.workers = await Promise.all(Array.from({ length: threads - 1 }, () => {
      const worker = new Worker(new URL("./wasm_threads.js", import.meta.url), { type: "module" });
      const stackTop = kernels.alloc(WORKER_STACK_BYTES) + WORKER_STACK_BYTES;
      return new Promise((resolve, reject) => {
        worker.onmessage = ({ data }) => (data.ready ? resolve(worker) : reject(new DeviceError(`a wasm thread failed to start: ${data.error}`)));
        // a script that did not load has no message: with a bundler, wasm_threads.js must sit beside this module's output
        worker.onerror = (event) => reject(new DeviceError(`a wasm thread failed to start: ${event.message ??
          `could not load ${new URL("./wasm_threads.js", import.meta.url).href}`}`));
        worker.postMessage({ module, memory, stackTop });
      });
    }));
    instance.exports.webrt_set_threads(threads);
    return kernels;
  }

  constructor(exports, memory, workers) {
    this.x = exports;
    this.memory = memory;
    this.workers = workers;
    this.x._initialize?.();
    this.scratch = this.alloc(SCRATCH_BYTES); // argument structs of the call in progress
  }

  get threads() {
    return this.workers.length + 1;
  }

  /** Stop the pool's workers (they never return from their loop on their own). */
  destroy() {
    this.workers.forEach((w) => w.terminate());
    this.workers = [];
  }

  get memoryBytes() {
    return this.memory.buffer.byteLength;
  }

  alloc(bytes) {
    const ptr = wasmPointer(this.x.webrt_alloc(Math.max(bytes, 4)));
    if (ptr === 0) throw new OutOfMemoryError(`wasm memory is exhausted allocating ${bytes} bytes (wasm32 allows 4 GiB)`);
    return ptr;
  }

  free(ptr) {
    this.x.webrt_free(ptr);
  }

  /**
   * Place what lives as long as the model (weights, KV cache: [{name, bytes, data?}]) in whole
   * pages grown here, outside the allocator; returns {name: ptr} (64-byte aligned). The kernels'
   * libc malloc (zig's: std.heap.WasmAllocator) rounds every large allocation up to a power of
   * two: one alloc per tensor made the real Gemma 3 270M's 262 MiB of weights and 43 MiB of KV
   * cache take 504 MiB of wasm memory (bench/gemma3_wllama.md). That allocator only hands out
   * pages it grew itself, so these are never reused. New pages are zero: tensors without data
   * (the KV cache) start zeroed.
   */
  placeResident(tensors) {
    const aligned = (n) => Math.ceil(n / 64) * 64;
    const total = tensors.reduce((sum, t) => sum + aligned(t.bytes), 0);
    let at = this.growPages(total, "the weights and KV cache");
    const ptrs = {};
    for (const t of tensors) {
      ptrs[t.name] = at;
      if (t.data) this.write(at, t.data);
      at += aligned(t.bytes);
    }
    return ptrs;
  }

  /**
   * Grow memory by whole 64 KiB pages for `bytes` (outside the allocator, never freed); returns
   * where they start. `what` names them in the error when memory cannot grow.
   */
  growPages(bytes, what) {
    try {
      return this.memory.grow(Math.ceil(bytes / 65536)) * 65536;
    } catch {
      throw new OutOfMemoryError(`wasm memory cannot grow by ${(bytes / 2 ** 20).toFixed(1)} MiB for ${what} ` +
        `(it holds ${(this.memoryBytes / 2 ** 20).toFixed(1)} MiB; wasm32 allows 4 GiB)`);
    }
  }

  /** A live view of memory (the buffer is replaced whenever memory grows). */
  bytes(ptr, length) {
    return new Uint8Array(this.memory.buffer, ptr, length);
  }

  write(ptr, data) {
    this.bytes(ptr, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  zero(ptr, length) {
    this.bytes(ptr, length).fill(0);
  }

  /** Call function `name` with args: tensors {ptr, shape, dtype} or integers. */
  call(name, args) {
    if (argBlockBytes(args.map((a) => (typeof a === "number" ? null : a.shape.length))) > SCRATCH_BYTES) {
      throw new DeviceError(`too many arguments for ${name}`);
    }
    this.pack(args, this.scratch);
    this.invoke(name, this.scratch, args.length);
  }

  /**
   * Write the argument block of a call at `base` (argBlockBytes long): TVM's packed-call slots
   * (16 bytes an argument, then the result's), then each tensor's DLTensor and its int64 shape.
   */
  pack(args, base) {
    const view = new DataView(this.memory.buffer);
    let at = base + 16 * args.length + 16; // after the args array and the result slot
    args.forEach((arg, i) => {
      const slot = base + 16 * i;
      view.setInt32(slot + 4, 0, true);
      view.setUint32(slot + 12, 0, true);
      if (typeof arg === "number") {
        view.setInt32(slot, 1, true);
        view.setBigInt64(slot + 8, BigInt(arg), true);
        return;
      }
      const dl = at;
      const shape = dl + 40;
      at = shape + 8 * arg.shape.length;
      const [code, bits] = DTYPE_CODES[arg.dtype];
      view.setUint32(dl, arg.ptr, true);
      view.setInt32(dl + 4, 1, true);
      view.setInt32(dl + 8, 0, true);
      view.setInt32(dl + 12, arg.shape.length, true);
      view.setUint8(dl + 16, code);
      view.setUint8(dl + 17, bits);
      view.setUint16(dl + 18, 1, true);
      view.setUint32(dl + 20, shape, true);
      view.setUint32(dl + 24, 0, true);
      view.setBigUint64(dl + 32, 0n, true);
      arg.shape.forEach((d, j) => view.setBigInt64(shape + 8 * j, BigInt(d), true));
      view.setInt32(slot, 7, true);
      view.setUint32(slot + 8, dl, true);
    });
  }

  /** Run function `name` on the argument block pack() wrote at `base` for `count` arguments. */
  invoke(name, base, count) {
    const fn = this.x[`__tvm_ffi_${name}`];
    if (!fn) throw new DeviceError(`kernels.wasm has no function ${name}`);
    let rc;
    try {
      rc = fn(0, base, count, base + 16 * count);
    } catch (err) {
      throw new DeviceError(`wasm kernel ${name} trapped: ${err.message}`);
    }
    if (rc !== 0) throw new DeviceError(`wasm kernel ${name} failed: ${this.lastError()}`);
  }

  lastError() {
    const ptr = wasmPointer(this.x.webrt_last_error());
    const bytes = this.bytes(ptr, 512);
    return new TextDecoder().decode(bytes.slice(0, bytes.indexOf(0)));
  }
}
