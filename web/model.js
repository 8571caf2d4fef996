// A loaded artifact: fetch and verify it, create the device, pipelines and weight buffers, and
// run its entries through the plan executor.

import { DeviceLostError, InputError, OutOfMemoryError, WebGPUUnavailableError } from "./errors.js";
import {
  artifactContextWindow, chooseContextWindow, largestFittingWindow, stateBytes, weightBytes,
} from "./context_window.js";
import { chooseKernelSet, deviceNeeds, wasmPrecision } from "./kernel_sets.js";
import { fetchArtifact, fetchManifest, fetchVerified, streamShards } from "./loader.js";
import { askForGarbageCollection, releaseBytes } from "./memory.js";
import { PlanExecutor } from "./plan_executor.js";
import { WasmExecutor } from "./wasm_executor.js";
import {
  applyWinners, findRecord, storeRecord, TuningDeviceLost, tuneWasm, tuneWebGPU, tuningOptions, wasmDeviceKey,
  webgpuDeviceKey,
} from "./tuner.js";
import { checkWasmFits, chooseWasmBuild, WasmKernels } from "./wasm_backend.js";
import { createBuffer, createDevice, createPipelines, gpuBytes, sharedDevice, uploadBuffer } from "./webgpu_backend.js";

const now = () => performance.now();

const DEVICES = ["webgpu", "wasm", "auto"];
const PRECISIONS = ["auto", "f32"]; // auto: the f16 kernel set where the adapter has shader-f16

/**
 * Load an artifact. device: "webgpu", "wasm" (TVM-compiled WebAssembly kernels), or "auto":
 * WebGPU when a hardware adapter with the kernels' limits exists, else wasm. A software adapter
 * (SwiftShader) counts as none when the artifact has wasm kernels: on the CPU, wasm is about 10x
 * faster (bench/chat.md). The model reports the choice and its reason (model.device, model.deviceReason).
 * threads (wasm): how many threads run the kernels; default one per core where the page is
 * crossOriginIsolated, else 1 (model.threads, model.threadsReason say what was used and why).
 * wasmBuild ("simd", "threads", "scalar", "relaxed", "relaxed_threads") forces one of the wasm builds, for
 * diagnostics; by default the relaxed-SIMD builds run where the browser has relaxed SIMD (model.wasmBuild).
 * tuning (WebGPU and wasm): "auto" (default) uses winners stored for this device (IndexedDB, or the tuning DB
 * the artifact ships) and times nothing; true or {budget_s (30), entries (["decode", "prefill:64"]),
 * force} times the schedule candidates when nothing is stored (web/tuner.js); false uses the
 * compile-time defaults. model.tuning says what was used.
 * precision (WebGPU): a q4f16 artifact runs its f16 kernel set where the adapter has shader-f16,
 * else its f32 set (model.precision "f16" / "f32", model.precisionReason says why; kernel_sets.js);
 * precision "f32" runs the f32 set anyway.
 * shareDevice (WebGPU): the page's one shared device rather than one of the model's own
 * (webgpu_backend.js sharedDevice); the model's buffers and gpuBytes stay its own.
 * contextWindow: the positions the KV cache holds (default 1024, at most the artifact's
 * config.context_window; model.contextWindow): full-attention layers' caches and the RoPE tables
 * get rows for that many only (context_window.js), sliding layers keep their ring.
 * beforeWeights(base, manifest): awaited once the model is known to fit and before the weights
 * download (the engine parses its tokenizer there, see createEngine); a tuning retry on WebGPU
 * does not call it again.
 */
export async function loadModel(url, { device = "webgpu", threads, wasmBuild, tuning = "auto", shareDevice = false, precision = "auto", contextWindow, onProgress = () => {}, beforeWeights = async () => {} } = {}) {
  const tune = tuningOptions(tuning);
  if (threads != null && !(Number.isInteger(threads) && threads >= 1)) throw new InputError(`threads must be an integer >= 1, got ${JSON.stringify(threads)}`);
  if (!DEVICES.includes(device)) throw new InputError(`device must be one of ${DEVICES.join(", ")}, got ${JSON.stringify(device)}`);
  if (!PRECISIONS.includes(precision)) throw new InputError(`precision must be one of ${PRECISIONS.join(", ")}, got ${JSON.stringify(precision)}`);
  const t0 = now();
  const { base, manifest } = await fetchManifest(url);
  const window = chooseContextWindow(manifest, contextWindow);
  let gpu = null;
  let reason = "requested";
  if (device !== "wasm") {
    try {
      gpu = await (shareDevice ? sharedDevice : createDevice)(deviceNeeds(manifest));
      const name = gpu.adapter.architecture || gpu.adapter.vendor || "(unnamed)";
      if (device === "auto" && gpu.adapter.software && manifest.wasm) {
        gpu.release();
        gpu = null;
        reason = `the WebGPU adapter ${name} is a software renderer; wasm runs faster on the CPU`;
      } else if (device === "auto") {
        reason = `WebGPU adapter ${name} has the limits the kernels need`;
      }
    } catch (err) {
      if (device === "webgpu" || !manifest.wasm) throw err;
      reason = `no usable WebGPU (${err.message})`;
    }
  }
  if (!gpu && !manifest.wasm) {
    throw new WebGPUUnavailableError("this artifact has no wasm kernels; recompile it with a webrt that builds them");
  }
  if (!gpu) return loadWasm(base, manifest, onProgress, t0, reason, threads, wasmBuild, tune, window, beforeWeights);
  // the f16 kernel set where the adapter has shader-f16, else the f32 one (model.precision says which and why)
  const set = chooseKernelSet(manifest, gpu.adapter, precision);
  return loadWebGPU(base, set.manifest, gpu, onProgress, t0, reason, tune, set, window, beforeWeights);
}

/** Never a half-loaded model: when loading fails, the device goes, and every buffer with it. */
async function loadWebGPU(base, manifest, gpu, onProgress, t0, reason, tune, set, window, beforeWeights = async () => {}) {
  try {
    return await loadOnWebGPU(base, manifest, gpu, onProgress, t0, reason, tune, set, window, beforeWeights);
  } catch (err) {
    const lost = await lostInfo(gpu.device.lost);
    gpu.release();
    throw lost && !(err instanceof DeviceLostError) ? deviceLostError(lost, "while loading the model") : err;
  }
}

/**
 * Before any download: every weight and state buffer within the device's buffer limits, at the
 * sizes loadOnWebGPU allocates for the page's `window` (a full-attention KV cache and the RoPE
 * tables get that many rows, not the artifact's context_window).
 */
export function checkWebGPUFits(manifest, limits, window) {
  const largest = (w) => [...manifest.weights.tensors.map((t) => [t.name, weightBytes(manifest, t, w)]),
    ...(manifest.state ?? []).map((s) => [s.name, stateBytes(manifest, s, w)])].reduce((a, b) => (b[1] > a[1] ? b : a), ["", 0]);
  const limit = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const [name, bytes] = largest(window);
  if (bytes > limit) {
    const mib = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    const smaller = largestFittingWindow(window, (w) => largest(w)[1] <= limit);
    throw new OutOfMemoryError(`the model will not fit this GPU: ${name} needs one buffer of ${mib(bytes)}` +
      `${window != null ? ` at contextWindow ${window}` : ""}, the device allows ${mib(limit)} ` +
      `(maxStorageBufferBindingSize / maxBufferSize); ${smaller != null ? `load it with contextWindow ${smaller} or less, ` : ""}` +
      'use device "wasm", or a smaller model');
  }
}

async function loadOnWebGPU(base, manifest, gpu, onProgress, t0, reason, tune, set, window, beforeWeights) {
  checkWebGPUFits(manifest, gpu.device.limits, window);
  await beforeWeights(base, manifest);
  const deviceKey = webgpuDeviceKey(gpu.adapter, gpu.device);
  const stored = tune && !tune.force ? await findRecord(base, manifest, deviceKey) : null;
  // only the kernels the chosen launches use are fetched and compiled
  const active = applyWinners(manifest, stored?.winners);
  const { kernels, weights } = await fetchArtifact(base, active, onProgress, "webgpu");
  const bound = {};
  gpu.device.pushErrorScope("out-of-memory");
  for (const t of manifest.weights.tensors) {
    const w = weights[t.name];
    bound[t.name] = { buffer: uploadBuffer(gpu.device, w.bytes.subarray(0, weightBytes(manifest, t, window)), t.name), shape: w.shape, dtype: w.dtype };
  }
  // the GPU buffers hold the weights now: the shards' memory goes at once (memory.js)
  for (const buffer of new Set(Object.values(weights).map((w) => w.bytes.buffer))) releaseBytes(new Uint8Array(buffer));
  await askForGarbageCollection();
  // state (the KV cache) starts zeroed: WebGPU zero-initializes new buffers
  for (const s of manifest.state ?? []) {
    bound[s.name] = { buffer: createBuffer(gpu.device, stateBytes(manifest, s, window), s.name), shape: s.shape, dtype: s.dtype };
  }
  const oom = await gpu.device.popErrorScope();
  if (oom) {
    throw new OutOfMemoryError(`the GPU ran out of memory holding the weights and KV cache (${oom.message}); ` +
      'use device "wasm", a smaller --context-window, or a smaller model');
  }
  const t1 = now();
  onProgress({ stage: "pipelines", loaded: 0, total: Object.keys(kernels).length });
  const pipelines = await createPipelines(gpu.device, active.kernels, kernels);
  const t2 = now();
  const executor = new PlanExecutor(gpu.device, active, pipelines, bound);
  let tuning = { source: stored ? stored.source : "default", device_key: deviceKey, winners: stored?.winners ?? {},
                 candidates_timed: 0, seconds: 0 };
  if (tune?.time && !stored && manifest.tuning?.space) {
    let report;
    try {
      report = await tuneWebGPU({ device: gpu.device, base, manifest, executor, pipelines, contextWindow: window }, tune, onProgress);
    } catch (err) {
      if (!(err instanceof TuningDeviceLost) || (tune.exclude?.length ?? 0) >= 3) throw err;
      // survive it: a new device, everything loaded again, and tuning resumed without the suspects
      gpu.release();
      const retry = await (gpu.shared ? sharedDevice : createDevice)(manifest.device.requires);
      return loadWebGPU(base, manifest, retry, onProgress, t0, reason, {
        ...tune, exclude: [...(tune.exclude ?? []), ...err.culprits], done: err.report.functions,
        timedBefore: err.report.candidates_timed, startedAt: err.startedAt }, set, window);
    }
    const record = { device: deviceKey, space: manifest.tuning.space, backend: "webgpu", winners: report.winners,
                     functions: report.functions, seconds: report.seconds, created: new Date().toISOString() };
    await storeRecord(record).catch(() => {}); // unremembered, but this load still uses the winners
    tuning = { source: "tuned", device_key: deviceKey, ...report, record };
  }
  onProgress({ stage: "ready" });
  return new Model(base, manifest, { device: "webgpu", reason, adapter: gpu.adapter, executor, tuning, contextWindow: window,
    ...precisionOf(set),
    lost: gpu.device.lost, memoryBytes: () => gpuBytes(gpu.device), release: gpu.release, sharedDevice: Boolean(gpu.shared) },
  { load_ms: t1 - t0, pipelines_ms: t2 - t1, tuning_ms: now() - t2 });
}

async function loadWasm(base, manifest, onProgress, t0, reason, threads, wasmBuild, tune, window, beforeWeights) {
  const choice = chooseWasmBuild(manifest.wasm, threads, wasmBuild);
  checkWasmFits(manifest, window);
  await beforeWeights(base, manifest);
  // the kernels first: each weight shard then streams into wasm memory block by block, so the
  // page never holds the weights twice (bench/gemma3_wllama.md)
  const module = await fetchVerified(base, choice.build.file, choice.build);
  onProgress({ stage: "pipelines", loaded: 0, total: 1 });
  const tc = now();
  const wasm = await WasmKernels.create(module, { threads: choice.threads });
  const instantiateMs = now() - tc;
  const bound = {};
  try {
    // weights and KV cache (zeroed) in one block outside the allocator (WasmKernels.placeResident)
    const tensors = manifest.weights.tensors;
    const state = manifest.state ?? [];
    const loaded = (t) => weightBytes(manifest, t, window); // the RoPE tables' rows for the window only
    const ptrs = wasm.placeResident([...tensors.map((t) => ({ name: t.name, bytes: loaded(t) })),
      ...state.map((s) => ({ name: s.name, bytes: stateBytes(manifest, s, window) }))]);
    // each checked block of a shard straight into its tensors' places (loader.js streamShards)
    const inShard = manifest.weights.shards.map((_, i) => tensors.filter((t) => t.shard === i));
    await streamShards(base, manifest, (index, offset, bytes) => {
      const end = offset + bytes.byteLength;
      for (const t of inShard[index]) {
        const from = Math.max(offset, t.offset);
        const to = Math.min(end, t.offset + loaded(t));
        if (from < to) wasm.write(ptrs[t.name] + (from - t.offset), bytes.subarray(from - offset, to - offset));
      }
    }, onProgress);
    for (const t of tensors) bound[t.name] = { ptr: ptrs[t.name], shape: t.shape, dtype: t.dtype };
    for (const s of state) bound[s.name] = { ptr: ptrs[s.name], shape: s.shape, dtype: s.dtype };
  } catch (err) {
    wasm.destroy(); // no half-loaded model: the thread pool stops, the memory goes with the instance
    throw err;
  }
  const t2 = now();
  const executor = new WasmExecutor(wasm, manifest, bound);
  // winners are exports of the same module: nothing more to fetch or compile
  const deviceKey = wasmDeviceKey(choice.build.file, wasm.threads);
  const stored = tune && !tune.force ? await findRecord(base, manifest, deviceKey) : null;
  executor.useWinners(stored?.winners);
  let tuning = { source: stored ? stored.source : "default", device_key: deviceKey, winners: stored?.winners ?? {},
                 candidates_timed: 0, seconds: 0 };
  if (tune?.time && !stored && manifest.tuning?.space) {
    const report = await tuneWasm({ kernels: wasm, manifest, executor, contextWindow: window }, tune, onProgress);
    const record = { device: deviceKey, space: manifest.tuning.space, backend: "wasm", winners: report.winners,
                     functions: report.functions, seconds: report.seconds, created: new Date().toISOString() };
    await storeRecord(record).catch(() => {});
    tuning = { source: "tuned", device_key: deviceKey, ...report, record };
  }
  onProgress({ stage: "ready" });
  return new Model(base, manifest, { device: "wasm", reason, adapter: null, executor, tuning, contextWindow: window,
    threads: wasm.threads, threadsReason: choice.reason, wasmBuild: choice.name,
    ...precisionOf(wasmPrecision(manifest)),
    memoryBytes: () => wasm.memoryBytes, release: () => wasm.destroy() },
  { load_ms: t2 - t0 - instantiateMs, pipelines_ms: instantiateMs, tuning_ms: now() - t2 });
}

/** A kernel-set choice ({precision, reason}) as the Model's backend fields. */
const precisionOf = ({ precision, reason }) => ({ precision, precisionReason: reason });

export class Model {
  constructor(base, manifest, backend, timings) {
    this.base = base;
    this.manifest = manifest;
    this.device = backend.device;
    this.deviceReason = backend.reason;
    this.adapter = backend.adapter;
    this.sharedDevice = backend.sharedDevice ?? false; // WebGPU: on the page's shared device (loadModel's shareDevice)
    this.executor = backend.executor;
    this.backend = backend;
    this.threads = backend.threads ?? null;       // wasm only
    this.threadsReason = backend.threadsReason ?? null;
    this.wasmBuild = backend.wasmBuild ?? null;   // wasm only: the build's name (chooseWasmBuild)
    this.tuning = backend.tuning ?? null;         // {source, device_key, winners, candidates_timed, ...}
    // positions the KV cache holds (loadModel's contextWindow), at most config.context_window
    this.contextWindow = backend.contextWindow ?? artifactContextWindow(manifest);
    // "f16" (a q4f16 artifact's f16 kernel set, on an adapter with shader-f16) or "f32", and why
    this.precision = backend.precision;
    this.precisionReason = backend.precisionReason;
    this.timings = timings;
    this.lost = null;                             // WebGPU: the GPUDeviceLostInfo once the device is lost
    backend.lost?.then((info) => { this.lost = info; });
  }

  /** Device memory in use: live GPU buffers (weights, state, planned storage), or wasm memory. */
  get gpuBytes() {
    return this.backend.memoryBytes();
  }

  /** Run any entry of the plan (see PlanExecutor.run); resolves to one item per output. */
  async run(entry, inputs, options) {
    if (this.lost) throw deviceLostError(this.lost, `before running ${entry}`);
    const t0 = now();
    let out;
    try {
      out = await this.executor.run(entry, inputs, options);
    } catch (err) {
      const lost = this.backend.lost && await lostInfo(this.backend.lost);
      throw lost ? deviceLostError(lost, `while running ${entry}`) : err;
    }
    this.timings.last_run_ms = now() - t0;
    return out;
  }

  /** Logits for token ids at positions 0..n-1: one array of vocab floats per position. */
  async forward(tokens) {
    const vocab = this.manifest.model.config.vocab_size;
    if (!tokens.length || tokens.some((t) => !Number.isInteger(t) || t < 0 || t >= vocab)) {
      throw new InputError(`tokens must be a non-empty list of integers in [0, ${vocab})`);
    }
    if (tokens.length > this.contextWindow) {
      throw new InputError(`${tokens.length} tokens exceed the context window of ${this.contextWindow}`);
    }
    const [out] = await this.run("forward", { input_ids: { data: Int32Array.from(tokens), shape: [1, tokens.length] } });
    const logits = [];
    for (let i = 0; i < tokens.length; i++) logits.push(out.data.subarray(i * vocab, (i + 1) * vocab));
    return { logits, forward_ms: this.timings.last_run_ms };
  }

  unload() {
    this.executor.destroy();
    this.backend.release();
  }
}

/** The GPUDeviceLostInfo when the device is lost, else null. A failed submission or mapping comes
 * first and the lost promise settles a moment later, so it gets a short grace period. */
async function lostInfo(lost) {
  return Promise.race([lost, new Promise((resolve) => setTimeout(() => resolve(null), 200))]);
}

function deviceLostError(info, when) {
  return new DeviceLostError(`the WebGPU device was lost ${when} (${info.reason}${info.message ? `: ${info.message}` : ""}); ` +
    "an engine loads the model again on its next request, a model from loadModel must be loaded again " +
    "(or reload the page)", info.reason);
}
