// An artifact's WebGPU kernel sets (docs/ARTIFACT.md, kernel sets): the f32 kernels at the
// manifest's top level, and optionally an f16 set (q4f16: float16 activations and KV cache over
// the same weight files) that needs the adapter's shader-f16.

/**
 * The manifest to load on this adapter, with the precision it runs in and why:
 * {manifest, precision: "f16" | "f32", reason}. wanted: "auto", or "f32" for the f32 set anyway
 * (loadModel's precision option, for comparisons). The f16 set replaces the top-level entries,
 * functions, kernels, state and device needs; it has no tuner candidates, so tuning stays off.
 */
export function chooseKernelSet(manifest, adapter, wanted = "auto") {
  const f16 = manifest.kernel_sets?.f16;
  if (!f16) return { manifest, precision: "f32", reason: "the artifact has f32 kernels only" };
  if (wanted === "f32") return { manifest, precision: "f32", reason: "precision f32 was requested" };
  if (!adapter.shaderF16) {
    return { manifest, precision: "f32",
             reason: "the WebGPU adapter lacks shader-f16: the artifact's f32 kernel set runs instead of its f16 one" };
  }
  const chosen = { ...manifest, entries: f16.entries, functions: f16.functions, kernels: f16.kernels, state: f16.state,
                   device: { ...manifest.device, requires: f16.requires }, tuning: { space: null, db: null } };
  return { manifest: chosen, precision: "f16", reason: "the WebGPU adapter has shader-f16: the f16 kernel set runs" };
}

/** Precision and reason on wasm, whose kernels are always f32. */
export function wasmPrecision(manifest) {
  return { precision: "f32", reason: manifest.kernel_sets?.f16 ? "wasm kernels are f32 (the f16 set is WebGPU only)"
    : "the artifact has f32 kernels only" };
}

/** The device limits to ask for: the largest of every kernel set's, so either set can run on it. */
export function deviceNeeds(manifest) {
  const needs = { ...manifest.device.requires };
  for (const set of Object.values(manifest.kernel_sets ?? {})) {
    for (const [name, value] of Object.entries(set.requires ?? {})) needs[name] = Math.max(needs[name] ?? 0, value);
  }
  return needs;
}
