// Before a download starts: will the model fit? The browser's storage (navigator.storage.estimate,
// with persist() asked for) and the device's limits (wasm32 memory, WebGPU buffer limits, reported
// device memory) against what the artifact's manifest says the model needs.

import { tensorBytes } from "../plan_inputs.js";
import { formatBytes } from "./view.js";

const WASM32_MEMORY = 4 * 2 ** 30; // a wasm32 memory cannot grow past 4 GiB
// planned intermediate tensors and the page's own copies come on top of weights and state
const WORKING_MEMORY = 1.25;

/** What loading the artifact takes: bytes to download, memory to hold, the largest one buffer. */
export function modelNeeds(manifest, device) {
  const shards = manifest.weights.shards.reduce((sum, s) => sum + s.bytes, 0);
  const files = (manifest.files ?? []).reduce((sum, f) => sum + f.bytes, 0);
  const wasm = device !== "webgpu" && manifest.wasm ? manifest.wasm.bytes : 0;
  const state = (manifest.state ?? []).map((s) => tensorBytes(s.shape, s.dtype));
  const tensors = manifest.weights.tensors.map((t) => t.bytes);
  return {
    downloadBytes: shards + files + wasm,
    memoryBytes: Math.ceil((shards + state.reduce((a, b) => a + b, 0)) * WORKING_MEMORY),
    largestBuffer: Math.max(0, ...state, ...tensors),
  };
}

async function storageCheck(needs, cachedBytes, problems, notes) {
  if (!navigator.storage?.estimate || !globalThis.caches) {
    notes.push("This browser gives the page no storage here (it needs https or localhost), so the weights are " +
      "downloaded on every visit.");
    return;
  }
  const { quota = 0, usage = 0 } = await navigator.storage.estimate();
  const toStore = Math.max(0, needs.downloadBytes - cachedBytes);
  const free = Math.max(0, quota - usage);
  if (toStore > free) {
    problems.push(`The model will not fit: it needs ${formatBytes(toStore)} of browser storage, and this site ` +
      `may use only ${formatBytes(free)} more (quota ${formatBytes(quota)}, ${formatBytes(usage)} in use). ` +
      "Free some space (delete site data in the browser's settings) or choose a smaller model.");
    return;
  }
  const persisted = (await navigator.storage.persisted?.()) || (await navigator.storage.persist?.());
  notes.push(`Storage: ${formatBytes(toStore)} to download` +
    (cachedBytes ? ` (${formatBytes(cachedBytes)} already cached)` : "") + `, ${formatBytes(free)} available; ` +
    (persisted ? "persistent." : "best-effort: the browser may evict the cached weights when space runs low."));
}

async function deviceCheck(manifest, device, needs, problems, notes) {
  if (device === "wasm" && !manifest.wasm) {
    problems.push("This model has no wasm kernels: choose WebGPU, or recompile it with a webrt that builds them.");
  }
  if (device !== "webgpu" && manifest.wasm && needs.memoryBytes > WASM32_MEMORY) {
    const message = `The model will not fit in WebAssembly memory: it needs about ${formatBytes(needs.memoryBytes)}, ` +
      `wasm32 allows ${formatBytes(WASM32_MEMORY)}.`;
    if (device === "wasm") problems.push(`${message} Choose WebGPU or a smaller model.`);
    else notes.push(`${message} Only WebGPU can run it.`);
  }
  // navigator.deviceMemory is in GiB, rounded down and capped at 8: only a value under the cap bounds it
  const deviceMemory = navigator.deviceMemory < 8 ? navigator.deviceMemory * 2 ** 30 : null;
  if (deviceMemory && needs.memoryBytes > deviceMemory) {
    problems.push(`The model will not fit in this device's memory: it needs about ${formatBytes(needs.memoryBytes)}, ` +
      `the browser reports ${formatBytes(deviceMemory)}. Choose a smaller model.`);
  }
  if (device !== "webgpu") return;
  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) {
    problems.push("WebGPU was chosen, but this browser has no WebGPU adapter: choose auto or wasm.");
    return;
  }
  const limits = { ...manifest.device.requires,
    maxStorageBufferBindingSize: needs.largestBuffer, maxBufferSize: needs.largestBuffer };
  for (const [name, need] of Object.entries(limits)) {
    if (adapter.limits[name] < need) {
      problems.push(`The model will not fit this GPU: it needs ${name} ${need}, the adapter allows ` +
        `${adapter.limits[name]}. Choose wasm or a smaller model.`);
    }
  }
  notes.push(`GPU limits: the largest buffer is ${formatBytes(needs.largestBuffer)}, the adapter allows ` +
    `${formatBytes(adapter.limits.maxStorageBufferBindingSize)}.`);
}

/** {ok, problems, notes, needs}: problems say why the model cannot be loaded here. */
export async function checkFit(manifest, device, cachedBytes = 0) {
  const needs = modelNeeds(manifest, device);
  const problems = [];
  const notes = [];
  await storageCheck(needs, cachedBytes, problems, notes);
  await deviceCheck(manifest, device, needs, problems, notes);
  return { ok: problems.length === 0, problems, notes, needs };
}
