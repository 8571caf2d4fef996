// The page's memory after a load: what the shell frees now rather than at a garbage collection
// that may not come. A page that loads a model and then generates allocates almost nothing more,
// so V8 may run no major GC for minutes, and the load's garbage stays beside the model: for the
// real Gemma 3 270M, 262 MiB of downloaded shards and ~190 MB of tokenizer parsing, where the
// model itself holds ~300 MiB (bench/gemma3_wllama.md).

/**
 * Free a downloaded file's memory now, once its bytes have been copied into place or parsed
 * (bytes: a whole ArrayBuffer's view, as fetchVerified returns; the caller keeps no other view).
 * ArrayBuffer.prototype.transfer(0) detaches the buffer and releases its memory at once; where it
 * is missing, the bytes wait for the GC as before.
 */
export function releaseBytes(bytes) {
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
  if (whole && bytes.buffer instanceof ArrayBuffer) bytes.buffer.transfer?.(0);
}

const PRESSURE_BYTES = 256 << 20;
const GC_TASK_MS = 20;

/**
 * Ask the JS engine for a major GC: V8 starts one when the memory held outside its heap by
 * ArrayBuffers grows past a limit, so an ArrayBuffer of PRESSURE_BYTES is made and released at
 * once. It is never written, so it costs address space for a moment, not memory. Measured in
 * Chromium (bench/gemma3_wllama.md): after the Gemma 3 tokenizer was built, the page's JS heap
 * went from 146 to 40 MiB. Another engine (or an allocation that fails) just skips the GC.
 */
export async function askForGarbageCollection() {
  try {
    new ArrayBuffer(PRESSURE_BYTES).transfer?.(0);
  } catch {
    // no room for the address space right now: the garbage waits for the engine's own GC
  }
  await new Promise((resolve) => setTimeout(resolve, GC_TASK_MS)); // the GC finishes in tasks of its own
}
