// One named Error class per failure. Each message says what was wrong and what to do about it.

export class WebrtError extends Error {}

/** The artifact's format version is not one this shell can read. */
export class ArtifactFormatError extends WebrtError {}

/** A downloaded file does not match the hash the manifest records for it. */
export class IntegrityError extends WebrtError {}

/** A file of the artifact could not be fetched. */
export class FetchError extends WebrtError {}

/** The browser has no WebGPU adapter, or one without the limits the kernels need. */
export class WebGPUUnavailableError extends WebrtError {}

/** A kernel failed to compile into a pipeline, or the device reported an error while running. */
export class DeviceError extends WebrtError {}

/**
 * The WebGPU device was lost (a driver reset, a GPU process crash, device.destroy()). `reason` is
 * the browser's GPUDeviceLostInfo.reason ("destroyed" or "unknown"). The request in flight ends with
 * it; an engine re-creates its device and buffers on the next request (see Engine.recover).
 */
export class DeviceLostError extends DeviceError {
  constructor(message, reason = "unknown") {
    super(message);
    this.reason = reason;
  }
}

/** The model does not fit: a buffer over the device's limits, or an allocation that failed. */
export class OutOfMemoryError extends DeviceError {}

/** Inputs given to an entry do not match what the plan expects. */
export class InputError extends WebrtError {}

/** Prompt plus max_tokens do not fit the model's context window. */
export class ContextWindowError extends WebrtError {}

/** The engine was used after unload(), or while another request is running. */
export class EngineStateError extends WebrtError {}

/** A response_format schema or grammar, or the tools' parameters, that the grammar engine cannot compile. */
export class GrammarError extends WebrtError {}

// Each class's name is spelled out rather than read from the constructor: a minifier (an app's
// bundler) renames classes, and err.name is what callers match on and how a Worker's errors are
// rebuilt on the page (worker_engine.js).
const NAMED = {
  WebrtError, ArtifactFormatError, IntegrityError, FetchError, WebGPUUnavailableError, DeviceError, DeviceLostError,
  OutOfMemoryError, InputError, ContextWindowError, EngineStateError, GrammarError,
};
for (const [name, Kind] of Object.entries(NAMED)) {
  Object.defineProperty(Kind.prototype, "name", { value: name, writable: true, configurable: true });
}
