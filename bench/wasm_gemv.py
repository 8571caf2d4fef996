"""The decode GEMV (x @ W^T for one token, f32) on wasm SIMD128 under each CPU schedule variant
(rows of the register block x f32 lanes of partial sums, webrt/compile/cpu_schedule.py), timed in
Node from memory (weights 4x the last-level cache, cycled, as a decode step streams every layer's
weights once) and from cache (one weight copy repeated, as a naive tuner would time it).

    python bench/wasm_gemv.py [--rounds 20] [--cache-mb 32]   # writes bench/wasm_gemv.json and .md

Not a timed test: the load average is recorded with the numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import tvm
from tvm import te

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.compile.wasm import BUILDS, build_wasm  # noqa: E402

SHAPES = ((2048, 768), (768, 2048))   # (N, K): the MLP up and down projections of the hidden-768 model
KNOBS = ((1, 8), (1, 16), (1, 4), (2, 8), (4, 4), (4, 8), (8, 4))  # (rows, lanes)


def gemv_module(n: int, k: int) -> tvm.IRModule:
    x = te.placeholder((1, 1, k), "float32", name="x")
    w = te.placeholder((n, k), "float32", name="w")
    r = te.reduce_axis((0, k), name="k")
    y = te.compute((1, 1, n), lambda b, i, j: te.sum(x[b, i, r] * w[j, r], axis=r), name="gemv")
    return tvm.IRModule({"gemv": te.create_prim_func([x, w, y]).with_attr("global_symbol", "gemv")})


@click.command()
@click.option("--rounds", default=20, show_default=True)
@click.option("--cache-mb", default=32, show_default=True, help="last-level cache size (lscpu)")
def main(rounds: int, cache_mb: int) -> None:
    load_before = os.getloadavg()
    variants = [{"id": f"r{rows}l{lanes}", "knobs": {"rows": rows, "lanes": lanes}} for rows, lanes in KNOBS]
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for n, k in SHAPES:
            wasm = Path(work) / f"gemv_{n}x{k}.wasm"
            wasm.write_bytes(build_wasm(gemv_module(n, k), ["gemv"], BUILDS[0], {"gemv": variants}))
            names = ["gemv"] + [f"gemv__{v['id']}" for v in variants]
            out = subprocess.run(["node", str(ROOT / "bench" / "wasm_gemv.mjs"), str(wasm), str(n), str(k),
                                  str(rounds), str(cache_mb), *names], capture_output=True, text=True, check=True)
            results[f"{n}x{k}"] = json.loads(out.stdout.strip().splitlines()[-1])
    report = {"command": "python bench/wasm_gemv.py" + (f" --rounds {rounds}" if rounds != 20 else "")
              + (f" --cache-mb {cache_mb}" if cache_mb != 32 else ""),
              "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": load_before, "load_after": os.getloadavg(),
              "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
              "results": results}
    (ROOT / "bench" / "wasm_gemv.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# wasm GEMV schedules ({report['date']})", "",
             f"Command: `{report['command']}`. Node {report['node']} (V8), 2-core AMD EPYC, 32 MB L3. One token's "
             "x @ W^T in f32 on the SIMD128 build; `gemv` is the shipped default (cpu_schedule._default_knobs), "
             "the others are the tuner's variants (rows x lanes). From memory: weight copies 4x the L3, cycled; "
             "from cache: one copy repeated. Medians of interleaved rounds.",
             f"Load average before: {load_before[0]:.2f}, after: {report['load_after'][0]:.2f}.", ""]
    for shape, by_name in results.items():
        lines += [f"## N x K = {shape}", "", "| schedule | from memory ms | GB/s | from cache ms | GB/s | max abs error |",
                  "|---|---|---|---|---|---|"]
        for name, r in by_name.items():
            label = "default (1 x 8)" if name == "gemv" else name.split("__")[1]
            lines.append(f"| {label} | {r['ms']['memory']:.3f} | {r['gb_per_s']['memory']:.1f} | {r['ms']['cache']:.3f} | "
                         f"{r['gb_per_s']['cache']:.1f} | {r['max_abs_error']:.1e} |")
        lines.append("")
    (ROOT / "bench" / "wasm_gemv.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
