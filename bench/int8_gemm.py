"""Can an int8 GEMM on wasm reach the embeddings target (issue 16)? bench/int8_gemm.c's many-token
GEMM micro-kernels, C[M,N] = A[M,K] x W[N,K]^T over M = 512 tokens and all-MiniLM-L6-v2's four
dense (N, K) shapes, in headless Chromium on one thread: f32 with f32x4.relaxed_madd (the baseline),
int16 x int16 dot_i16x8_s (int8 weights stored widened or widened on load), relaxed SIMD's
i8 x u7 dot, and int8 x int8 widened to int16; each in several register blocks (tokens x weight
rows), beside one peak loop per instruction family (the instruction ceilings).

    python bench/int8_gemm.py [--rounds 15]   # writes bench/int8_gemm.json and .md

Kernels, quantizers and peak loops take turns within each round; each time is the median over rounds,
and the ratios to f32 are medians of per-round ratios. Not a timed test: the load average is recorded.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.bench.native import cpu_description, load_average  # noqa: E402
from webrt.browser import chromium_context  # noqa: E402
from webrt.compile.wasm import _zig  # noqa: E402
from webrt.server import create_app, serve_in_background  # noqa: E402

TOKENS = 512  # 8 sentences of 64 tokens: one kernel call of webrt's embeddings engine
# (N, K) of all-MiniLM-L6-v2's dense matmuls: QKV, attention output, FFN up, FFN down
SHAPES = ((1152, 384), (384, 384), (1536, 384), (384, 1536))
SHAPE_NAMES = {(1152, 384): "QKV", (384, 384): "output", (1536, 384): "FFN up", (384, 1536): "FFN down"}
FAMILIES = ("f32", "i16w16", "i16w8", "u7", "u7s", "u6p", "i8")
BLOCKS = ("t2r4", "t3r3", "t4r2", "t3r4", "t2r2", "t1r4")
KERNELS = tuple(f"{f}_{b}" for f in FAMILIES for b in BLOCKS)
QUANT_OF = {"f32": None, "i16w16": "quant_i16", "i16w8": "quant_i16", "u7": "quant_u7", "u7s": "quant_u7", "u6p": "quant_u6",
            "i8": "quant_i8"}
ABOUT = {
    "f32": "f32, f32x4.relaxed_madd (the baseline)",
    "i16w16": "activations int16 per token, int8 weights stored widened to int16; i32x4.dot_i16x8_s + i32x4.add",
    "i16w8": "the same, int8 weights widened in registers (v128.load8x8_s)",
    "u7": "i32x4.relaxed_dot_i8x16_i7x16_add_s: int8 weights (a), per-token asymmetric u7 activations (b), "
          "zero point off with the weight row sums",
    "u7s": "the same arithmetic split: i16x8.relaxed_dot_i8x16_i7x16_s, i32x4.extadd_pairwise_i16x8_s, i32x4.add",
    "u6p": "6-bit asymmetric activations ([0, 63]): two i16x8.relaxed_dot_i8x16_i7x16_s summed in int16 "
           "(cannot overflow), then one extadd_pairwise and add per 32 multiply-adds",
    "i8": "int8 activations per token and int8 weights, both widened to int16 on load; i32x4.dot_i16x8_s + i32x4.add",
}
# peak loop -> (ops per instruction (group), what it issues); 12 accumulators, iterations per call
PEAKS = {
    "peak_f32_madd": (8, "f32x4.relaxed_madd"),
    "peak_f32_mul_add": (8, "f32x4.mul + f32x4.add"),
    "peak_dot_i16": (16, "i32x4.dot_i16x8_s + i32x4.add"),
    "peak_relaxed_dot": (32, "i32x4.relaxed_dot_i8x16_i7x16_add_s"),
    "peak_relaxed_dot_chain": (32, "the same, each result its next a operand (a dependent chain per accumulator)"),
    "peak_relaxed_dot_split": (32, "i16x8.relaxed_dot_i8x16_i7x16_s + i32x4.extadd_pairwise_i16x8_s + i32x4.add"),
    "peak_relaxed_dot_pair": (64, "2x i16x8.relaxed_dot_i8x16_i7x16_s + i16x8.add + extadd_pairwise + i32x4.add"),
}
PEAK_ACCUMULATORS = 12
PEAK_ITERS = 4_000_000
GOP_PER_SENTENCE = 1.36  # all-MiniLM-L6-v2's dense matmuls for a 64-token sentence
TARGET_GOPS = 85  # 2x transformers.js q8's ~31 sentences/s at 1 thread (bench/embeddings.md)
EXPORTS = (*KERNELS, "quant_sym", "quant_u7", "quant_weights", *PEAKS, "__heap_base")


def build(out: Path) -> Path:
    exports = [f"-Wl,--export={name}" for name in EXPORTS]
    _zig("cc", "-target", "wasm32-freestanding", "-O2", "-msimd128", "-mrelaxed-simd", "-nostdlib", "-Wl,--no-entry",
         *exports, "-o", str(out), str(ROOT / "bench" / "int8_gemm.c"), cwd=out.parent)
    return out


def summarize(raw: dict, rounds: int) -> dict:
    """GOP/s, per-round ratios to the shape's best f32 block, and each family's best block per shape."""
    shapes = []
    for shape in raw["shapes"]:
        n, k, res = shape["n"], shape["k"], shape["results"]
        ops = 2 * TOKENS * n * k
        best_f32 = min((name for name in res if name.startswith("f32_")), key=lambda nm: res[nm]["ms"])
        rows = {}
        for name in KERNELS:
            v = res[name]
            ratio = statistics.median(b / t for b, t in zip(res[best_f32]["rounds_ms"], v["rounds_ms"]))
            quant = QUANT_OF[name.split("_")[0]]
            q_ms = res[quant]["ms"] if quant else 0.0
            rows[name] = {"ms": v["ms"], "fastest_ms": min(v["rounds_ms"]), "gops": ops / v["ms"] / 1e6, "vs_f32": ratio,
                          "gops_fastest": ops / min(v["rounds_ms"]) / 1e6, "quant_ms": q_ms,
                          "gops_with_quant": ops / (v["ms"] + q_ms) / 1e6, "max_abs_error": v["max_abs_error"],
                          "max_abs_error_vs_f32_inputs": v["max_abs_error_vs_f32_inputs"],
                          "output_scale": v["output_scale"]}
        shapes.append({"n": n, "k": k, "name": SHAPE_NAMES[(n, k)], "ops": ops, "best_f32": best_f32, "kernels": rows,
                       "quant_ms": {q: res[q]["ms"] for q in ("quant_i16", "quant_i8", "quant_u7", "quant_u6")}})
    # a family over one encoder layer (each shape once), its best block per shape
    families = {}
    total_ops = sum(s["ops"] for s in shapes)
    for fam in FAMILIES:
        picks = {s["name"]: min((nm for nm in s["kernels"] if nm.startswith(fam + "_")), key=lambda nm: s["kernels"][nm]["ms"])
                 for s in shapes}
        ms = sum(s["kernels"][picks[s["name"]]]["ms"] for s in shapes)
        ms_q = ms + sum(s["kernels"][picks[s["name"]]]["quant_ms"] for s in shapes)
        fastest = sum(s["kernels"][picks[s["name"]]]["fastest_ms"] for s in shapes)
        families[fam] = {"blocks": picks, "ms": ms, "gops": total_ops / ms / 1e6, "gops_with_quant": total_ops / ms_q / 1e6,
                         "gops_fastest_rounds": total_ops / fastest / 1e6,
                         "sentences_per_s": total_ops / ms / 1e6 / GOP_PER_SENTENCE,
                         "sentences_per_s_with_quant": total_ops / ms_q / 1e6 / GOP_PER_SENTENCE}
    for fam in FAMILIES:
        families[fam]["vs_f32"] = families["f32"]["ms"] / families[fam]["ms"]
    peaks = {}
    for name, (ops_per, what) in PEAKS.items():
        ms = raw["peaks"][name]["ms"]
        fastest = min(raw["peaks"][name]["rounds_ms"])
        peaks[name] = {"issues": what, "ms": ms, "gops": PEAK_ITERS * PEAK_ACCUMULATORS * ops_per / ms / 1e6,
                       "gops_fastest_round": PEAK_ITERS * PEAK_ACCUMULATORS * ops_per / fastest / 1e6}
    return {"shapes": shapes, "families": families, "peaks": peaks}


@click.command()
@click.option("--rounds", default=15, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=ROOT / "bench" / "int8_gemm")
def main(rounds: int, out: Path) -> None:
    load_before = load_average()
    started = time.time()
    js = (ROOT / "bench" / "int8_gemm.js").read_text()
    js = js[js.index("async ("):]  # the function expression, past the header comment
    with tempfile.TemporaryDirectory(prefix="webrt-int8-gemm-") as work:
        build(Path(work) / "int8_gemm.wasm")
        with serve_in_background(create_app(Path(work))) as base, chromium_context() as context:
            page = context.new_page()
            page.goto(f"{base}/shell/run.html")
            page.wait_for_function("window.webrtReady === true", timeout=30_000)
            version = context.browser.version if context.browser else None
            raw = page.evaluate(js, {"wasmUrl": "/model/int8_gemm.wasm", "shapes": SHAPES, "kernels": KERNELS, "m": TOKENS,
                                     "rounds": rounds, "peaks": list(PEAKS), "peakIters": PEAK_ITERS})
    for entry in [*raw["peaks"].values(), *(v for shape in raw["shapes"] for v in shape["results"].values())]:
        entry["rounds_ms"] = [round(t, 3) for t in entry["rounds_ms"]]
    report = {"command": "python bench/int8_gemm.py" + (f" --rounds {rounds}" if rounds != 15 else ""),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "browser": version or raw["userAgent"], "user_agent": raw["userAgent"], "cpu": cpu_description(),
              "load_average_before": load_before, "load_average_after": load_average(), "rounds": rounds,
              "tokens": TOKENS, "wall_s": round(time.time() - started), **summarize(raw, rounds), "raw": raw}
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(out.with_suffix(".md").read_text())


def markdown(r: dict) -> str:
    fams, peaks = r["families"], r["peaks"]
    lines = [f"# int8 GEMM micro-kernels on wasm for the embeddings encoder ({r['date']})", "",
             f"Command: `{r['command']}`. Headless Chromium {r['browser']}, one thread, on {r['cpu']}. "
             f"Load average (1, 5, 15 min) before {r['load_average_before']}, after {r['load_average_after']} "
             "(a shared 2-core machine: compare ratios within one run). Built with zig's clang "
             "(`-O2 -msimd128 -mrelaxed-simd`, bench/int8_gemm.c).", "",
             f"C[M,N] = A[M,K] x W[N,K]^T with M = {r['tokens']} tokens, f32 out, over all-MiniLM-L6-v2's dense shapes. "
             f"Times are medians of {r['rounds']} interleaved rounds; GOP/s = 2 M N K / time; `vs f32` is the median over "
             "rounds of the shape's best f32 block's time over the kernel's, in the same round. Integer kernels dequantize "
             "in their epilogue (per-token x per-row scales); the activation quantizer is timed separately and added in "
             "the `+quant` column. Errors are max abs over a sample of outputs (every 13th token, every 7th row) against "
             "float64 on the kernel's own dequantized inputs (`err`: the arithmetic) and on the f32 inputs "
             "(`err vs f32`: the quantization too); A is uniform in [-0.5, 0.5), W in [-0.05, 0.05).", "",
             *[f"- `{name}`: {text}" for name, text in ABOUT.items()],
             "- blocks: `tXrY` = X tokens x Y weight rows of accumulators per register block; weight panels stay in L1 "
             "while a chunk of tokens (about 128 KiB of activations) sweeps them.", "",
             "## Instruction ceilings (peak loops: 12 independent accumulators, no memory traffic)", "",
             "| loop | issues | GOP/s (multiply-add = 2 ops), median | fastest round |", "|---|---|---|---|"]
    for name, v in peaks.items():
        lines.append(f"| `{name}` | {v['issues']} | {v['gops']:.1f} | {v['gops_fastest_round']:.1f} |")
    lines += ["", "## Per family: best block per shape, over one encoder layer (each shape once)", "",
              "| family | GOP/s | vs f32 | GOP/s +quant | GOP/s, fastest rounds | sentences/s bound | +quant | "
              "blocks (QKV, output, up, down) |", "|---|---|---|---|---|---|---|---|"]
    for fam, v in fams.items():
        lines.append(f"| `{fam}` | {v['gops']:.1f} | {v['vs_f32']:.2f}x | {v['gops_with_quant']:.1f} | "
                     f"{v['gops_fastest_rounds']:.1f} | "
                     f"{v['sentences_per_s']:.1f} | {v['sentences_per_s_with_quant']:.1f} | "
                     f"{', '.join(v['blocks'].values())} |")
    lines += ["", "GOP/s and the sentences/s bound use each shape's median time (its best block by median); `vs f32` is "
              "the f32 family's layer time over this family's; `fastest rounds` uses those blocks' fastest round per "
              f"shape (interference only slows a kernel down: roughly what a quiet machine allows). Sentences/s bound = GOP/s / {GOP_PER_SENTENCE} (the "
              "dense matmuls of one 64-token sentence), as if the whole encoder ran at the matmul rate: an upper bound.", ""]
    for s in r["shapes"]:
        q = s["quant_ms"]
        lines += [f"## {s['name']}: N x K = {s['n']} x {s['k']}", "",
                  f"Activation quantizers: int16 {q['quant_i16']:.3f} ms, int8 {q['quant_i8']:.3f} ms, u7 {q['quant_u7']:.3f} ms, "
                  f"u6 {q['quant_u6']:.3f} ms.",
                  "", "| kernel | ms | GOP/s | vs f32 | GOP/s +quant | err | err vs f32 | output scale |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, v in s["kernels"].items():
            lines.append(f"| `{name}` | {v['ms']:.3f} | {v['gops']:.1f} | {v['vs_f32']:.2f}x | {v['gops_with_quant']:.1f} | "
                         f"{v['max_abs_error']:.1e} | {v['max_abs_error_vs_f32_inputs']:.1e} | {v['output_scale']:.2f} |")
        lines.append("")
    lines += ["## Notes", "",
              "- V8's x64 code generator (src/codegen/shared-ia32-x64/macro-assembler-shared-ia32-x64.cc) lowers "
              "i32x4.relaxed_dot_i8x16_i7x16_add_s to one vpdpbusd only with AVX-VNNI; without it (this CPU) to "
              "pcmpeqd + psrlw (a splat of ones, rebuilt every time), vpmaddubsw, pmaddwd, paddd: two multiplier "
              "instructions per 16 multiply-adds, the same multiplier cost per multiply-add as i32x4.dot_i16x8_s. "
              "That is why the 8-bit relaxed dot's ceiling sits near the int16 dot's instead of 2x above it; only "
              "summing two pmaddubsw results in int16 before widening (the 6-bit `u6p` form) lowers the cost.",
              "- Each peak loop and kernel runs several times before timing, with a 1 s pause for V8's background "
              "TurboFan compile (dynamic tiering: a function's first calls run Liftoff code, many times slower).",
              "- Integer accumulation is exact, so `err` is only the f32 epilogue; `err vs f32` is the quantization "
              "(int8 weights per row dominate the int16-activation kernels; 7- and 6-bit activations add to it).",
              "- The sentences/s bounds count only the dense matmuls; attention, layer norms and GELU add to a real run.",
              "", "## Conclusion", "", conclusion(r), ""]
    return "\n".join(lines)


def conclusion(r: dict) -> str:
    fams, peaks = r["families"], r["peaks"]
    f32 = fams["f32"]

    def verdict(v):
        if v["gops_with_quant"] >= TARGET_GOPS:
            return "reaches the target"
        return ("does not reach the target (its fastest rounds, without the quantizer, "
                + ("do" if v["gops_fastest_rounds"] >= TARGET_GOPS else "do not either") + ")")

    def line(fam, what):
        v = fams[fam]
        return (f"{what} is `{fam}`: {v['gops']:.1f} GOP/s over an encoder layer's four matmuls ({v['gops_with_quant']:.1f} "
                f"with its activation quantizer, {v['gops_fastest_rounds']:.1f} in the fastest rounds), {v['vs_f32']:.2f}x "
                f"the f32 baseline, a bound of {v['sentences_per_s_with_quant']:.0f} sentences/s with the quantizer: "
                f"{v['gops_with_quant'] / TARGET_GOPS:.2f}x the ~{TARGET_GOPS} GOP/s the 2x-transformers.js target needs "
                f"at 1 thread; it {verdict(v)}.")

    asked = ("i16w16", "i16w8", "u7", "i8")
    best = max(asked, key=lambda f: fams[f]["gops"])
    extra = max(("u7s", "u6p"), key=lambda f: fams[f]["gops"])
    p = {name: v["gops_fastest_round"] for name, v in peaks.items()}  # a ceiling: the fastest round
    return (f"The f32 relaxed_madd baseline runs {f32['gops']:.1f} GOP/s here ({f32['sentences_per_s']:.0f} sentences/s bound). "
            + line(best, "The fastest of the asked integer kernels (int16 dot, i8 x u7 relaxed dot, i8 widened)")
            + " " + line(extra, "Of the two extra variants, the faster")
            + f" Instruction ceilings in this browser (the peak loops' fastest rounds): f32x4.relaxed_madd {p['peak_f32_madd']:.0f} GOP/s, dot_i16x8_s + add "
            f"{p['peak_dot_i16']:.0f}, relaxed_dot_i8x16_i7x16_add_s {p['peak_relaxed_dot']:.0f}, its split form "
            f"{p['peak_relaxed_dot_split']:.0f}, the 6-bit pair form {p['peak_relaxed_dot_pair']:.0f}: the 8-bit and "
            f"16-bit integer ceilings are {max(p['peak_dot_i16'], p['peak_relaxed_dot'], p['peak_relaxed_dot_split']) / p['peak_f32_madd']:.2f}x the "
            f"f32 one{' and below ~%d GOP/s, so no int8 GEMM of these forms can reach the target on this CPU, whatever its blocking' % TARGET_GOPS if max(p['peak_dot_i16'], p['peak_relaxed_dot'], p['peak_relaxed_dot_split']) < TARGET_GOPS else ''}.")


if __name__ == "__main__":
    main()
