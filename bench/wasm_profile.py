"""Per-function time of the wasm kernels for one prefill and a few decode steps of an artifact.

    python bench/wasm_profile.py ARTIFACT [--prompt 32] [--steps 16] [--threads N] [--build simd|threads|scalar]

Prints milliseconds by function, slowest first: per decode step, then for the prefill."""

from __future__ import annotations

from pathlib import Path

import click

from webrt.browser import shell_page

_PROFILE_JS = """
async ([url, prompt, steps, options]) => {
  const model = await window.webrt.loadModel(url, { device: "wasm", ...options });
  const vocab = model.manifest.model.config.vocab_size;
  const common = (ids, offset) => ({
    input_ids: { data: Int32Array.from(ids), shape: [1, ids.length] }, offset: { values: [offset] },
    token_mask: { data: window.webrt.allowAllMask(vocab), shape: [Math.ceil(vocab / 32)] },
    penalty_ids: { data: new Int32Array(0), shape: [0] }, penalty_counts: { data: new Float32Array(0), shape: [0] },
    sampling: { data: Float32Array.of(0, 1, 0, 0), shape: [4] }, seed: { values: [1] },
    bias_ids: { data: Int32Array.of(0), shape: [1] }, bias_values: { data: Float32Array.of(0), shape: [1] }, logprobs: { values: [0] } });
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


@click.command()
@click.argument("artifact", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--prompt", default=32)
@click.option("--steps", default=16)
@click.option("--threads", default=1)
@click.option("--build", default=None, help="force a wasm build (default: chosen by threads)")
def main(artifact: Path, prompt: int, steps: int, threads: int, build: str | None) -> None:
    options = {"threads": threads, **({"wasmBuild": build} if build else {})}
    with shell_page(artifact) as (page, url):
        r = page.evaluate(_PROFILE_JS, [url, prompt, steps, options])
    print(f"prefill {prompt} tokens: {r['prefillMs']:.0f} ms; decode {steps} steps: "
          f"{r['decodeMs'] / steps:.1f} ms/step ({1000 * steps / r['decodeMs']:.2f} tok/s), threads {r['threads']}")
    # prefill and decode call different functions (a symbolic against a one-token sequence)
    print(f"{'decode function':60s} {'ms/step':>10s}")
    for name in sorted(r["decode"], key=lambda n: -r["decode"][n])[:25]:
        print(f"{name:60s} {r['decode'][name] / steps:10.2f}")
    print(f"{'prefill function':60s} {'ms':>10s}")
    for name in sorted(r["prefill"], key=lambda n: -r["prefill"][n])[:25]:
        print(f"{name:60s} {r['prefill'][name]:10.1f}")


if __name__ == "__main__":
    main()
