// WebGPU backend: the device, one compute pipeline per kernel, GPU buffers, and one submission per run.

import { DeviceError, OutOfMemoryError, WebGPUUnavailableError } from "./errors.js";

const MAX_GRID_X = 65535;
const UNIFORM_SLOT = 256; // minUniformBufferOffsetAlignment is at most 256 everywhere

// the limits a shared device asks for at the adapter's own values, so that any artifact the adapter
// can run fits it (besides the buffer sizes, which every device asks for so)
const SHAREABLE_LIMITS = ["maxComputeWorkgroupStorageSize", "maxComputeInvocationsPerWorkgroup", "maxStorageBuffersPerShaderStage"];

/**
 * A device of its own for one model: {device, adapter, release}. allLimits: ask for the adapter's
 * limits rather than the artifact's needs (shareDevice).
 */
export async function createDevice(requires, { allLimits = false } = {}) {
  if (!globalThis.navigator?.gpu) {
    throw new WebGPUUnavailableError("this browser has no WebGPU (navigator.gpu is missing); " +
      "use a browser with WebGPU enabled");
  }
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new WebGPUUnavailableError("no WebGPU adapter is available on this device");
  const requiredLimits = {
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
  };
  for (const [name, need] of Object.entries(requires)) {
    if (adapter.limits[name] < need) {
      throw new WebGPUUnavailableError(`the WebGPU adapter allows ${name}=${adapter.limits[name]}, ` +
        `the kernels need ${need}`);
    }
    requiredLimits[name] = Math.max(need, requiredLimits[name] ?? 0);
  }
  if (allLimits) for (const name of SHAREABLE_LIMITS) requiredLimits[name] = adapter.limits[name];
  // f16 kernels need the feature on the device; where the adapter has it, every device gets it
  const shaderF16 = adapter.features?.has("shader-f16") ?? false;
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures: shaderF16 ? ["shader-f16"] : [] });
  const info = adapter.info ?? {};
  // a CPU renderer: the spec's fallback flag, or SwiftShader by name (Chromium may not set the flag)
  const software = Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter) || info.architecture === "swiftshader";
  return { device, adapter: { vendor: info.vendor, architecture: info.architecture, description: info.description, software, shaderF16 },
           release: () => device.destroy() };
}

let shared = null; // the page's shared device: {ready: Promise<createDevice's result>, users, lost}

/**
 * The page's one shared device (loadModel's shareDevice), created on first use with the adapter's
 * limits. Each model gets its own view of it: a distinct key for gpuBytes and for its buffers,
 * which its release() destroys. The device goes with the last model's release; once lost, the
 * next model gets a new one. Resolves to {device (the view), adapter, release}.
 */
export async function sharedDevice(requires) {
  if (!shared || shared.lost) {
    const entry = { users: 0, lost: false, ready: createDevice({}, { allLimits: true }) };
    shared = entry;
    entry.ready.then(({ device }) => device.lost.then(() => { entry.lost = true; }),
      () => { if (shared === entry) shared = null; });
  }
  const entry = shared;
  const { device, adapter } = await entry.ready;
  for (const [name, need] of Object.entries(requires)) {
    if (device.limits[name] < need) {
      throw new WebGPUUnavailableError(`the WebGPU adapter allows ${name}=${device.limits[name]}, the kernels need ${need}`);
    }
  }
  entry.users += 1;
  // every property the device's own (methods bound to it): only the view's identity differs
  const view = new Proxy(device, {
    get: (target, name) => {
      const value = Reflect.get(target, name, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    for (const buffer of [...(liveBuffers.get(view) ?? [])]) buffer.destroy();
    entry.users -= 1;
    if (entry.users === 0) {
      if (shared === entry) shared = null;
      device.destroy();
    }
  };
  return { device: view, adapter, release, shared: true };
}

function bindGroupLayout(device, kernel) {
  const entries = kernel.storage_bindings.map((b) => ({
    binding: b.binding,
    visibility: GPUShaderStage.COMPUTE,
    buffer: { type: b.access === "read" ? "read-only-storage" : "storage" },
  }));
  if (kernel.pod_binding !== null) {
    entries.push({ binding: kernel.pod_binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform" } });
  }
  return device.createBindGroupLayout({ entries });
}

/** Create every kernel's pipeline concurrently; resolves to {name: {pipeline, layout, kernel}}. */
export async function createPipelines(device, kernels, sources) {
  const entries = await Promise.all(Object.entries(kernels).map(async ([name, kernel]) => {
    const layout = bindGroupLayout(device, kernel);
    const module = device.createShaderModule({ code: sources[name], label: name });
    try {
      const pipeline = await device.createComputePipelineAsync({
        label: name,
        layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: kernel.entry },
      });
      return [name, { pipeline, layout, kernel }];
    } catch (err) {
      const info = await module.getCompilationInfo();
      const messages = info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join("; ");
      throw new DeviceError(`kernel ${name} failed to compile: ${err.message} ${messages}`);
    }
  }));
  return Object.fromEntries(entries);
}

/** Bytes held in live GPU buffers per device (or a model's view of the shared one), and the
 * buffers: created through this module, not yet destroyed. */
const liveBytes = new WeakMap();
const liveBuffers = new WeakMap();

export function gpuBytes(device) {
  return liveBytes.get(device) ?? 0;
}

/** device.createBuffer, counted in gpuBytes until the buffer's destroy(). */
export function trackedBuffer(device, descriptor) {
  let buffer;
  try {
    buffer = device.createBuffer(descriptor);
  } catch (err) {
    // mappedAtCreation throws RangeError when the browser cannot allocate the mapping
    if (!(err instanceof RangeError)) throw err;
    throw new OutOfMemoryError(`the GPU could not allocate ${descriptor.size} bytes for ${descriptor.label ?? "a buffer"} ` +
      `(${err.message}); use device "wasm", a smaller --context-window, or a smaller model`);
  }
  liveBytes.set(device, gpuBytes(device) + buffer.size);
  if (!liveBuffers.has(device)) liveBuffers.set(device, new Set());
  liveBuffers.get(device).add(buffer);
  const destroy = buffer.destroy.bind(buffer);
  let destroyed = false;
  buffer.destroy = () => {
    if (!destroyed) liveBytes.set(device, gpuBytes(device) - buffer.size);
    destroyed = true;
    liveBuffers.get(device).delete(buffer);
    destroy();
  };
  return buffer;
}

export function createBuffer(device, bytes, label) {
  return trackedBuffer(device, {
    label,
    size: Math.max(16, Math.ceil(bytes / 16) * 16),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
}

export function uploadBuffer(device, bytes, label) {
  const buffer = trackedBuffer(device, {
    label,
    size: Math.max(16, Math.ceil(bytes.byteLength / 16) * 16),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    mappedAtCreation: true,
  });
  new Uint8Array(buffer.getMappedRange()).set(bytes);
  buffer.unmap();
  return buffer;
}

/** The bind group of one launch: its buffers, and its slot of the program's uniform buffer. */
export function bindGroupFor(device, { layout, kernel }, buffers, uniform, slot) {
  const entries = buffers.map((b) => ({ binding: b.binding, resource: { buffer: b.buffer, offset: b.offset, size: b.size } }));
  if (kernel.pod_binding !== null) {
    entries.push({ binding: kernel.pod_binding, resource: { buffer: uniform, offset: slot * UNIFORM_SLOT, size: 16 * Math.ceil(kernel.pod_fields.length / 4) } });
  }
  return device.createBindGroup({ layout, entries });
}

/**
 * Grids wider than the x limit fold into z: the kernel rebuilds x = z * gridDim.x + x and returns
 * when x > packGridDimX, so packGridDimX holds the last valid index. Returns [x, y, z, packGridDimX].
 */
function foldGrid([x, y, z], name) {
  if (x <= MAX_GRID_X) return [x, y, z, x - 1];
  if (z !== 1) throw new DeviceError(`kernel ${name}: grid ${[x, y, z]} is too large`);
  return [MAX_GRID_X, y, Math.ceil(x / MAX_GRID_X), x - 1];
}

/** Write every dispatch's POD arguments (and packGridDimX) into its slot of the uniform buffer. */
export function writePods(device, uniform, dispatches) {
  const bytes = new ArrayBuffer(uniform.size);
  const view = new DataView(bytes);
  for (const d of dispatches) {
    d.folded = foldGrid(d.grid, d.launch.kernel);
    const fields = d.launch.podFields;
    const base = d.launch.slot * UNIFORM_SLOT;
    fields.forEach((field, j) => {
      const value = field.name === "packGridDimX" ? d.folded[3] : d.pods[j];
      if (field.type === "f32") view.setFloat32(base + 4 * j, value, true);
      else if (field.type === "u32") view.setUint32(base + 4 * j, value, true);
      else view.setInt32(base + 4 * j, value, true);
    });
  }
  device.queue.writeBuffer(uniform, 0, bytes);
}

/** Run the dispatches in one compute pass and one submission, then read back the byte regions
 * [{buffer, offset, size}] (through one staging buffer); resolves to one ArrayBuffer per region. */
export async function submit(device, dispatches, regions) {
  const total = regions.reduce((sum, r) => sum + r.size, 0);
  const staging = total > 0 && trackedBuffer(device, { size: total, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  device.pushErrorScope("validation");
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  for (const d of dispatches) {
    pass.setPipeline(d.launch.pipeline);
    pass.setBindGroup(0, d.launch.bindGroup);
    pass.dispatchWorkgroups(d.folded[0], d.folded[1], d.folded[2]);
  }
  pass.end();
  let at = 0;
  for (const r of regions) {
    encoder.copyBufferToBuffer(r.buffer, r.offset, staging, at, r.size);
    at += r.size;
  }
  device.queue.submit([encoder.finish()]);
  const error = await device.popErrorScope();
  if (error) throw new DeviceError(`the device rejected the forward pass: ${error.message}`);
  if (!staging) return [];
  await staging.mapAsync(GPUMapMode.READ);
  const mapped = staging.getMappedRange();
  at = 0;
  const out = regions.map((r) => {
    const bytes = mapped.slice(at, at + r.size);
    at += r.size;
    return bytes;
  });
  staging.unmap();
  staging.destroy();
  return out;
}
