"""Per-function time of an encoder artifact's `embed` entry on wasm, with the GFLOP/s of its
matmuls: where a batch of sentences spends its time, and how close each matmul comes to the roof.

    python bench/embeddings_profile.py ARTIFACT [--batch 8] [--seq 64] [--threads 1] [--runs 3] [--build simd]

Prints, slowest first, milliseconds per run by function and, for the matmuls, GFLOP/s (2 x
multiply-adds / time). The shapes come from the artifact's config (hidden, intermediate, heads)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from webrt.browser import shell_page

_PROFILE_JS = """
async ([url, batch, seq, runs, threads, wasmBuild]) => {
  const model = await window.webrt.loadModel(url, { device: "wasm", threads, wasmBuild: wasmBuild ?? undefined });
  const n = batch * seq;
  const ids = Int32Array.from({ length: n }, (_, i) => 1000 + (i * 7919) % 20000);
  const mask = new Int32Array(n).fill(1);
  const inputs = { input_ids: { data: ids, shape: [batch, seq] }, attention_mask: { data: mask, shape: [batch, seq] } };
  await model.run("embed", inputs);  // warm-up: allocation, JIT tiers
  const profile = {};
  const t0 = performance.now();
  for (let r = 0; r < runs; r++) await model.run("embed", inputs, { profile });
  const totalMs = (performance.now() - t0) / runs;
  const info = { totalMs, profile, threads: model.threads ?? 1, build: model.wasmBuild };
  model.unload();
  return info;
}
"""


def matmul_flops(name: str, cfg: dict, batch: int, seq: int) -> float | None:
    """FLOPs of one call of a matmul function of the BERT encoder (webrt/models/bert.py), else None."""
    tokens, hidden, inter = batch * seq, cfg["hidden_size"], cfg["intermediate_size"]
    heads = cfg["num_attention_heads"]
    if name.startswith("fused_NT_matmul1"):          # attention scores: QK^T per head
        return 2.0 * batch * heads * seq * seq * (hidden // heads)
    if name == "matmul":                               # probabilities @ V
        return 2.0 * batch * heads * seq * seq * (hidden // heads)
    if name.startswith("fused_NT_matmul2"):          # FFN up (+ GELU)
        return 2.0 * tokens * inter * hidden
    if name.startswith("fused_NT_matmul3"):          # FFN down
        return 2.0 * tokens * hidden * inter
    if name.startswith("fused_NT_matmul"):           # Q, K, V, attention output
        return 2.0 * tokens * hidden * hidden
    return None


def calls_per_run(manifest: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for step in manifest["entries"]["embed"]["steps"]:
        if step["op"] == "call":
            counts[step["func"]] = counts.get(step["func"], 0) + 1
    return counts


@click.command()
@click.argument("artifact", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--batch", default=8)
@click.option("--seq", default=64)
@click.option("--threads", default=1)
@click.option("--runs", default=3)
@click.option("--build", default=None, help="force a wasm build (simd, threads, relaxed, relaxed_threads); "
              "default: the one the shell picks")
def main(artifact: Path, batch: int, seq: int, threads: int, runs: int, build: str | None) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    cfg = manifest["model"]["config"]
    counts = calls_per_run(manifest)
    with shell_page(artifact) as (page, url):
        r = page.evaluate(_PROFILE_JS, [url, batch, seq, runs, threads, build])
    total_flops = 0.0
    print(f"batch {batch} x {seq} tokens, {r['build']} build, threads {r['threads']}: {r['totalMs']:.1f} ms/run, "
          f"{1000 * batch / r['totalMs']:.1f} sentences/s")
    print(f"{'function':40s} {'calls':>5s} {'ms/run':>9s} {'share':>6s} {'GFLOP/s':>8s}")
    kernel_ms = sum(r["profile"].values()) / runs
    for name in sorted(r["profile"], key=lambda n: -r["profile"][n]):
        ms = r["profile"][name] / runs
        flops = matmul_flops(name, cfg, batch, seq)
        rate = ""
        if flops is not None:
            total_flops += flops * counts[name]
            rate = f"{flops * counts[name] / ms / 1e6:8.1f}"
        print(f"{name:40s} {counts[name]:5d} {ms:9.1f} {100 * ms / kernel_ms:5.1f}% {rate}")
    print(f"all matmuls: {total_flops / 1e9:.2f} GFLOP per run, {total_flops / r['totalMs'] / 1e6:.1f} GFLOP/s "
          "over the whole run")


if __name__ == "__main__":
    main()
