"""Per-function time of an artifact's wasm kernels: one prefill and a few decode steps, each function
timed by the wasm executor's profile option (`model.run(..., { profile })`). Used by
bench/wasm_profile.py and by the native comparison (webrt/bench/native.py) to say where time goes."""

from __future__ import annotations

from pathlib import Path

PROFILE_JS = """
async ([url, prompt, steps, options]) => {
  const model = await window.webrt.loadModel(url, { device: "wasm", ...options });
  const vocab = model.manifest.model.config.vocab_size;
  const common = (ids, offset) => window.webrt.greedyInputs(vocab, ids, offset);
  const ids = Array.from({ length: prompt }, (_, i) => (i * 7919) % vocab);
  const prefill = {};
  let t0 = performance.now();
  let [tok] = await model.run("prefill", common(ids, 0), { readback: [0], profile: prefill });
  const prefillMs = performance.now() - t0;
  const decode = {};
  t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    [tok] = await model.run("decode", common([tok.data[0]], prompt + s), { readback: [0], profile: decode });
  }
  const decodeMs = performance.now() - t0;
  const info = { prefillMs, decodeMs, prefill, decode, threads: model.threads ?? 1, device: model.device };
  model.unload();
  return info;
}
"""


def profile_wasm(artifact: Path, prompt: int = 32, steps: int = 16, threads: int = 1, build: str | None = None) -> dict:
    """{prefillMs, decodeMs, prefill: {function: ms}, decode: {function: ms over all steps}, threads}."""
    from ..browser import shell_page

    options = {"threads": threads, **({"wasmBuild": build} if build else {})}
    with shell_page(artifact) as (page, url):
        return page.evaluate(PROFILE_JS, [url, prompt, steps, options])


def top_functions(times: dict, per: float = 1.0, count: int = 8) -> list[tuple[str, float, float]]:
    """The slowest functions: (name, ms / per, share of the total)."""
    total = sum(times.values()) or 1.0
    return [(name, ms / per, ms / total) for name, ms in sorted(times.items(), key=lambda kv: -kv[1])[:count]]
