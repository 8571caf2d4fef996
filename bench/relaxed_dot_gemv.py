"""Candidate 4-bit decode GEMVs for wasm beside the shipped integer-dot kernel (issue 20), in Node:
bench/relaxed_dot_gemv.c's kernels (int_dot.c's own arithmetic on 4 rows at a time, and relaxed
SIMD's i8 x i7 dot product with 15-bit activations split in two bytes or with 8-bit ones) on the
default model's matrix shapes, from memory (weights 4x the last-level cache, cycled), interleaved.

    python bench/relaxed_dot_gemv.py [--rounds 25] [--cache-mb 32]   # writes bench/relaxed_dot_gemv.json and .md

Not a timed test: the load average is recorded with the numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.bench.native import cpu_description, load_average  # noqa: E402
from webrt.compile.wasm import _zig  # noqa: E402

KERNELS = ("shipped", "i16_r4", "relaxed_r1", "relaxed_r4", "relaxed_i8_r1", "relaxed_i8_r4")
# (N, K) of SmolLM2-135M's matrices: attention q/o, MLP gate/up, MLP down
SHAPES = ((576, 576), (1536, 576), (576, 1536))
ABOUT = {
    "shipped": "webrt/compile/int_dot.c as shipped (one row at a time; activations to 16 bits)",
    "i16_r4": "the same arithmetic, 4 rows at a time (each activation vector loaded once per 4 rows)",
    "relaxed_r1": "i32x4.relaxed_dot_i8x16_i7x16_add_s, 15-bit activations as two bytes, 1 row at a time",
    "relaxed_r4": "the same, 4 rows at a time",
    "relaxed_i8_r1": "the same instruction with 8-bit activations (llama.cpp's precision), 1 row at a time",
    "relaxed_i8_r4": "the same, 4 rows at a time",
}


def build(out: Path) -> Path:
    exports = [f"-Wl,--export={name}" for name in (*KERNELS, "__heap_base")]
    _zig("cc", "-target", "wasm32-freestanding", "-O2", "-msimd128", "-mrelaxed-simd", "-nostdlib", "-Wl,--no-entry",
         *exports, "-o", str(out), str(ROOT / "bench" / "relaxed_dot_gemv.c"), cwd=out.parent)
    return out


@click.command()
@click.option("--rounds", default=25, show_default=True)
@click.option("--cache-mb", default=32, show_default=True, help="the last-level cache; weights cycle through 4x it")
@click.option("--out", type=click.Path(path_type=Path), default=ROOT / "bench" / "relaxed_dot_gemv")
def main(rounds: int, cache_mb: int, out: Path) -> None:
    load_before = load_average()
    started = time.time()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        wasm = build(Path(tmp) / "gemv.wasm")
        for n, k in SHAPES:
            run = subprocess.run(["node", "--experimental-wasm-relaxed-simd", str(ROOT / "bench" / "relaxed_dot_gemv.mjs"),
                                  str(wasm), str(n), str(k), str(rounds), str(cache_mb), *KERNELS],
                                 capture_output=True, text=True, check=True)
            results.append({"n": n, "k": k, **json.loads(run.stdout)})
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": "python bench/relaxed_dot_gemv.py " + " ".join(sys.argv[1:]),
              "node": node, "rounds": rounds, "cache_mb": cache_mb, "load_average_before": load_before,
              "load_average_after": load_average(), "cpu": cpu_description(), "wall_s": round(time.time() - started),
              "shapes": results}
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown(report))
    print(out.with_suffix(".md").read_text())


def markdown(r: dict) -> str:
    lines = [f"# 4-bit decode GEMV candidates on wasm ({r['date']})", "",
             f"Command: `{r['command']}`. Node {r['node']} (V8) on {r['cpu']}, {r['rounds']} interleaved rounds, each cycling "
             f"weight copies 4x a {r['cache_mb']} MB last-level cache; the median round's time per call. Load average "
             f"before {r['load_average_before']}, after {r['load_average_after']}. GB/s counts the codes and the f32 "
             "scale and min per group of 32 (0.75 bytes a weight); the error is against f32 on the same dequantized "
             "weights, outputs up to the `scale` column.", "",
             *[f"- `{name}`: {text}" for name, text in ABOUT.items()], ""]
    for shape in r["shapes"]:
        res = shape["result"]
        base = res["shipped"]["ms"]
        lines += [f"## N x K = {shape['n']}x{shape['k']}", "",
                  "| kernel | ms | GB/s | speed vs shipped | max abs error | scale |", "|---|---|---|---|---|---|"]
        for name, v in res.items():
            lines.append(f"| `{name}` | {v['ms']:.4f} | {v['weight_gb_per_s']:.2f} | {base / v['ms']:.2f}x | "
                         f"{v['max_abs_error']:.1e} | {v['output_scale']:.2f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
