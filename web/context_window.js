// The page's context window: how many positions a loaded model keeps keys and values for.
//
// A full-attention layer's KV cache and the RoPE tables have one row per position of the
// artifact's context_window (docs/ARTIFACT.md, "Entries"). The kernels never touch a row at or past
// the positions they run: prefill/decode write rows offset..offset+n-1 and attend over rows
// 0..offset+n-1, and RoPE reads the rows of those positions. So the shell allocates rows for the
// page's window only, and the generator refuses to go past it. A sliding layer's ring (fewer rows
// than the artifact's window) keeps all its rows: its row is the position modulo the ring.

import { InputError } from "./errors.js";
import { tensorBytes } from "./plan_inputs.js";

// As wllama's default n_ctx; a page raises it with loadModel's contextWindow, up to the artifact's.
export const DEFAULT_CONTEXT_WINDOW = 1024;

/** The artifact's own window (config.context_window); null for artifacts without one: an embedding
 * model, or a kernel-test artifact that has no model section at all. */
export const artifactContextWindow = (manifest) => manifest.model?.config?.context_window ?? null;

const ROPE_TABLES = /^rope(_local)?\.(cos|sin)$/; // [context_window, head_dim], RopeTables in webrt/models/blocks.py

/** The window a model loads with: `requested` (an integer in [1, the artifact's]) or the default. */
export function chooseContextWindow(manifest, requested) {
  const most = artifactContextWindow(manifest);
  if (most == null) return null; // an embedding model: no cache
  if (requested == null) return Math.min(most, DEFAULT_CONTEXT_WINDOW);
  if (!Number.isInteger(requested) || requested < 1 || requested > most) {
    throw new InputError(`contextWindow must be an integer in [1, ${most}] (the artifact's context window; ` +
      `compile with a larger --context-window for more), got ${JSON.stringify(requested)}`);
  }
  return requested;
}

/** Rows a tensor of the artifact needs for `window` positions: fewer for per-position tables. */
function rowsFor(manifest, tensor, window, perPosition) {
  const most = artifactContextWindow(manifest);
  return window != null && perPosition && tensor.shape[0] === most ? window : tensor.shape[0];
}

/** Bytes to allocate for a state tensor (the KV cache) at `window` positions. */
export function stateBytes(manifest, state, window) {
  const rows = rowsFor(manifest, state, window, true);
  return tensorBytes([rows, ...state.shape.slice(1)], state.dtype);
}

/** Bytes of a weight tensor to load at `window` positions: the RoPE tables' first rows, all of any other. */
export function weightBytes(manifest, tensor, window) {
  const rows = rowsFor(manifest, tensor, window, ROPE_TABLES.test(tensor.name));
  return rows === tensor.shape[0] ? tensor.bytes : (tensor.bytes / tensor.shape[0]) * rows;
}

/**
 * The largest window below `window` at which `fits(w)` holds, for an error to name the contextWindow
 * that would load; null where the model has no window or not even one position fits. `fits` is
 * monotone: a smaller window never needs more memory.
 */
export function largestFittingWindow(window, fits) {
  if (window == null || window <= 1 || !fits(1)) return null;
  let [lo, hi] = [1, window - 1]; // fits(lo) holds
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
