// Types for errors.js: one named Error class per failure. `name` is the class's name, so a
// caught error can be told apart by `instanceof` or by `err.name` (also across a Worker).

export class WebrtError extends Error {
  constructor(message: string);
}

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

/** The WebGPU device was lost; `reason` is GPUDeviceLostInfo.reason. */
export class DeviceLostError extends DeviceError {
  constructor(message: string, reason?: string);
  readonly reason: "destroyed" | "unknown" | string;
}

/** The model does not fit: a buffer over the device's limits, or an allocation that failed. */
export class OutOfMemoryError extends DeviceError {}

/** A request, option or input that is not what was expected (a wrong field, type or range). */
export class InputError extends WebrtError {}

/** Prompt plus max_tokens do not fit the model's context window. */
export class ContextWindowError extends WebrtError {}

/** The engine was used after unload(), or while another request is running. */
export class EngineStateError extends WebrtError {}

/** A response_format schema or grammar, or the tools' parameters, that the grammar engine cannot compile. */
export class GrammarError extends WebrtError {}
