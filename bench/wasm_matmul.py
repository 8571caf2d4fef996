"""The many-token f32 matmul (x @ W^T over a batch of tokens: prefill, a batch of sentences) on the
simd and the relaxed-SIMD wasm builds, under the token-blocked schedule's register blocks (tokens x
weight rows, webrt/compile/cpu_schedule.py), timed in headless Chromium through the JS shell's own
WasmKernels. The relaxed build is the same schedule with each vector multiply-add fused into one
f32x4.relaxed_madd (webrt/compile/wasm.py); this measures what that buys per shape and block.

    python bench/wasm_matmul.py [--rounds 30] [--tokens 512]   # writes bench/wasm_matmul.json and .md

Builds and variants take turns within each round, so a busy neighbour slows them alike; each cell
is the median over rounds. Not a timed test: the load average is recorded with the numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click
import tvm
from tvm import te, tirx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.browser import chromium_context  # noqa: E402
from webrt.compile.wasm import BUILDS, build_wasm  # noqa: E402
from webrt.server import create_app, serve_in_background  # noqa: E402

# (N, K): all-MiniLM-L6-v2's FFN up and down and its attention projections; the default model's
# (SmolLM2-135M) FFN up
SHAPES = ((1536, 384), (384, 1536), (384, 384), (1536, 576))
BLOCKS = ((2, 4), (3, 3), (3, 4), (4, 3), (4, 2), (5, 2))   # (tokens, rows); the default is first
BUILD_NAMES = ("simd", "relaxed")


def matmul_module(n: int, k: int) -> tvm.IRModule:
    tokens = tirx.Var("tokens", "int64")
    x = te.placeholder((1, tokens, k), "float32", name="x")
    w = te.placeholder((n, k), "float32", name="w")
    r = te.reduce_axis((0, k), name="k")
    y = te.compute((1, tokens, n), lambda b, i, j: te.sum(x[b, i, r] * w[j, r], axis=r), name="matmul")
    return tvm.IRModule({"matmul": te.create_prim_func([x, w, y]).with_attr("global_symbol", "matmul")})


PAGE_JS = """
async ({ shapes, builds, names, tokens, rounds }) => {
  const { WasmKernels } = await import("/shell/wasm_backend.js");
  const m = tokens;
  const runs = [];
  for (const [n, k] of shapes) {
    const xs = Float32Array.from({ length: m * k }, () => Math.random() - 0.5);
    const ws = Float32Array.from({ length: n * k }, () => Math.random() - 0.5);
    for (const build of builds) {
      const bytes = await (await fetch(`/model/${build}_${n}x${k}.wasm`)).arrayBuffer();
      const kernels = await WasmKernels.create(bytes);
      const [x, w, y] = [m * k, n * k, m * n].map((count) => kernels.alloc(count * 4));
      kernels.write(x, xs);
      kernels.write(w, ws);
      const args = [{ ptr: x, shape: [1, m, k], dtype: "float32" }, { ptr: w, shape: [n, k], dtype: "float32" },
                    { ptr: y, shape: [1, m, n], dtype: "float32" }];
      runs.push({ n, k, build, kernels, args, y, xs, ws, times: Object.fromEntries(names.map((nm) => [nm, []])) });
    }
  }
  for (const run of runs) for (const nm of names) for (let i = 0; i < 5; i++) run.kernels.call(nm, run.args); // tier-up
  for (let r = 0; r < rounds; r++) {
    for (const run of runs) {
      for (const nm of names) {
        const t0 = performance.now();
        run.kernels.call(nm, run.args);
        run.times[nm].push(performance.now() - t0);
      }
    }
  }
  const median = (a) => a.slice().sort((p, q) => p - q)[a.length >> 1];
  return runs.map(({ n, k, build, kernels, args, y, xs, ws, times }) => {
    const out = {};
    for (const nm of names) {
      kernels.call(nm, args);
      const got = new Float32Array(kernels.memory.buffer, y, m * n);
      let error = 0;  // against a float64 sum, on a sample of outputs
      for (let t = 0; t < m; t += 13) {
        for (let j = 0; j < n; j += 7) {
          let s = 0;
          for (let i = 0; i < k; i++) s += xs[t * k + i] * ws[j * k + i];
          error = Math.max(error, Math.abs(s - got[t * n + j]));
        }
      }
      const ms = median(times[nm]);
      out[nm] = { ms, gflops: (2 * m * n * k) / ms / 1e6, max_abs_error: error };
    }
    return { n, k, build, results: out };
  });
}
"""


@click.command()
@click.option("--rounds", default=30, show_default=True)
@click.option("--tokens", default=512, show_default=True, help="token rows (8 sentences of 64)")
def main(rounds: int, tokens: int) -> None:
    load_before = os.getloadavg()
    variants = [{"id": f"t{t}r{r}", "knobs": {"tokens": t, "rows": r}} for t, r in BLOCKS]
    names = [f"matmul__{v['id']}" for v in variants]
    builds = {b.name: b for b in BUILDS}
    with tempfile.TemporaryDirectory(prefix="webrt-wasm-matmul-") as work:
        for n, k in SHAPES:
            for name in BUILD_NAMES:
                code = build_wasm(matmul_module(n, k), ["matmul"], builds[name], {"matmul": variants})
                (Path(work) / f"{name}_{n}x{k}.wasm").write_bytes(code)
        with serve_in_background(create_app(Path(work))) as base, chromium_context() as context:
            page = context.new_page()
            page.goto(f"{base}/shell/run.html")
            page.wait_for_function("window.webrtReady === true", timeout=30_000)
            version = context.browser.version if context.browser else page.evaluate("navigator.userAgent")
            rows = page.evaluate(PAGE_JS, {"shapes": SHAPES, "builds": BUILD_NAMES, "names": names,
                                           "tokens": tokens, "rounds": rounds})
    report = {"command": "python bench/wasm_matmul.py" + (f" --rounds {rounds}" if rounds != 30 else "")
              + (f" --tokens {tokens}" if tokens != 512 else ""),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "browser": version,
              "load_before": load_before, "load_after": os.getloadavg(), "tokens": tokens, "results": rows}
    (ROOT / "bench" / "wasm_matmul.json").write_text(json.dumps(report, indent=1) + "\n")
    (ROOT / "bench" / "wasm_matmul.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    by = {(r["n"], r["k"], r["build"]): r["results"] for r in report["results"]}
    lines = [f"# wasm f32 matmul: SIMD128 vs relaxed SIMD ({report['date']})", "",
             f"Command: `{report['command']}`. {report['browser']}, headless, one thread. x @ W^T over "
             f"{report['tokens']} tokens in f32 (webrt/compile/cpu_schedule.py's token-blocked schedule); "
             "`simd` is the SIMD128 build, `relaxed` the same schedule with f32x4.relaxed_madd "
             "(webrt/compile/wasm.py). GFLOP/s, medians of interleaved rounds; the block is tokens x weight "
             "rows, t2r4 the shipped default.",
             f"Load average before: {report['load_before'][0]:.2f}, after: {report['load_after'][0]:.2f} "
             "(a shared 2-core machine: compare within a row).", "",
             "| N x K | block | simd GFLOP/s | relaxed GFLOP/s | relaxed / simd | max abs error (simd, relaxed) |",
             "|---|---|---|---|---|---|"]
    for n, k in SHAPES:
        simd, relaxed = by[(n, k, "simd")], by[(n, k, "relaxed")]
        for name in simd:
            s, r = simd[name], relaxed[name]
            lines.append(f"| {n} x {k} | {name.split('__')[1]} | {s['gflops']:.1f} | {r['gflops']:.1f} | "
                         f"{r['gflops'] / s['gflops']:.2f}x | {s['max_abs_error']:.1e}, {r['max_abs_error']:.1e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
