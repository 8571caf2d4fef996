// A loaded artifact: fetch and verify it, create the device, pipelines and weight buffers, and
// run its entries through the plan executor.

import { InputError, WebGPUUnavailableError } from "./errors.js";
import { fetchArtifact, fetchManifest } from "./loader.js";
import { PlanExecutor } from "./plan_executor.js";
import { createBuffer, createDevice, createPipelines, gpuBytes, uploadBuffer } from "./webgpu_backend.js";


const now = () => performance.now();

export async function loadModel(url, { device = "webgpu", onProgress = () => {} } = {}) {
  if (device !== "webgpu") {
    throw new WebGPUUnavailableError(`device ${JSON.stringify(device)} is not available in this build; use "webgpu"`);
  }
  const t0 = now();
  const { base, manifest } = await fetchManifest(url);
  const gpu = await createDevice(manifest.device.requires);
  const { kernels, weights } = await fetchArtifact(base, manifest, onProgress);
  const bound = {};
  for (const [name, w] of Object.entries(weights)) {
    bound[name] = { buffer: uploadBuffer(gpu.device, w.bytes, name), shape: w.shape, dtype: w.dtype };
  }
  // state (the KV cache) starts zeroed: WebGPU zero-initializes new buffers
  for (const s of manifest.state ?? []) {
    bound[s.name] = { buffer: createBuffer(gpu.device, s.shape.reduce((a, b) => a * b, 1) * 4, s.name), shape: s.shape, dtype: s.dtype };
  }
  const t1 = now();
  onProgress({ stage: "pipelines", loaded: 0, total: Object.keys(kernels).length });
  const pipelines = await createPipelines(gpu.device, manifest.kernels, kernels);
  const t2 = now();
  onProgress({ stage: "ready" });
  return new Model(base, manifest, gpu, new PlanExecutor(gpu.device, manifest, pipelines, bound),
    { load_ms: t1 - t0, pipelines_ms: t2 - t1 });
}

export class Model {
  constructor(base, manifest, gpu, executor, timings) {
    this.base = base;
    this.manifest = manifest;
    this.device = "webgpu";
    this.adapter = gpu.adapter;
    this.gpu = gpu.device;
    this.executor = executor;
    this.timings = timings;
  }

  /** Bytes in live GPU buffers: weights, state, planned storage, staging. */
  get gpuBytes() {
    return gpuBytes(this.gpu);
  }

  /** Run any entry of the plan (see PlanExecutor.run); resolves to one item per output. */
  async run(entry, inputs, options) {
    const t0 = now();
    const out = await this.executor.run(entry, inputs, options);
    this.timings.last_run_ms = now() - t0;
    return out;
  }

  /** Logits for token ids at positions 0..n-1: one array of vocab floats per position. */
  async forward(tokens) {
    const vocab = this.manifest.model.config.vocab_size;
    if (!tokens.length || tokens.some((t) => !Number.isInteger(t) || t < 0 || t >= vocab)) {
      throw new InputError(`tokens must be a non-empty list of integers in [0, ${vocab})`);
    }
    if (tokens.length > this.manifest.model.config.context_window) {
      throw new InputError(`${tokens.length} tokens exceed the context window of ${this.manifest.model.config.context_window}`);
    }
    const [out] = await this.run("forward", { input_ids: { data: Int32Array.from(tokens), shape: [1, tokens.length] } });
    const logits = [];
    for (let i = 0; i < tokens.length; i++) logits.push(out.data.subarray(i * vocab, (i + 1) * vocab));
    return { logits, forward_ms: this.timings.last_run_ms };
  }

  unload() {
    this.executor.destroy();
    this.gpu.destroy();
  }
}
