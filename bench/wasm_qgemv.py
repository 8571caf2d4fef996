"""The quantized decode GEMV (x @ W^T for one token, dequantized inside the kernel) of every GGUF
weight type on wasm SIMD128, one thread, in Node, weights streamed (64 MB of copies): the GGUF-layout
kernels of webrt/weight_types.py (every GGUF type, Q4_0/Q4_1 included) beside the group layout
(webrt/quantize.py, f32 scale and min) that q4f32 uses, and the f32 GEMV.

    python bench/wasm_qgemv.py [--rounds 10] [--cache-mb 32]   # writes bench/wasm_qgemv.json and .md
    python bench/wasm_qgemv.py --tokens 16   # x @ W^T over 16 tokens (prefill): wasm_qgemv_tokens16.json and .md
    python bench/wasm_qgemv.py --shape 262144x640 --types Q8_0   # an LM head: wasm_qgemv_262144x640.json and .md
    python bench/wasm_qgemv.py --int-dot   # also the integer-dot kernel (int_dot.c) where it applies: <name>_int_dot

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
from types import SimpleNamespace

import click
import numpy as np
import tvm
from tvm import te

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_weight_types import reference, synthetic_blocks  # noqa: E402
from webrt.compile.int_dot import use_int_dot  # noqa: E402
from webrt.compile.wasm import BUILDS, build_wasm  # noqa: E402
from webrt.models.quantized import _decode_stages, _dequant_at, _type_weight, qmatmul_compute  # noqa: E402
from webrt.quantize import from_gguf_blocks, words_per_group  # noqa: E402
from webrt.weight_types import LANES, STEP, TYPES, pack  # noqa: E402

SHAPE = (2048, 2048)  # one MLP-sized matrix (--shape for others, e.g. an LM head)
KERNELS_NOTE = ("The GGUF-type kernels decode each sub-block's scale and offset once per row of the register "
                "block (quantized_matmul's decode stages, cpu_schedule._decode_once_per_step; for K-quants once "
                "per 256-column super-block, unrolled) and a high-bit plane's bit with one shift and one mask; "
                "the inner loop is then the group layout's: shift, mask, convert, scale, offset, multiply-add.")
INT_DOT_NOTE = ("`*_int_dot`: the integer-dot kernel (webrt/compile/int_dot.c, `webrt compile --int-dot`), activations "
                "rounded to int8 per 32 columns; its max abs error against the exact result is that rounding.")
TOKENS_NOTE = ("Every kernel runs the token-blocked matmul (2 tokens x 4 weight rows per register block); the "
               "quantized ones decode a register block's weight rows once per call into a small f32 tile that "
               "every token then reads (qmatmul_compute's qdequant stage, cpu_schedule._decode_rows_ahead).")


def _tokens(tokens: int):
    """The sequence axis: 1 for a decode GEMV; symbolic for many tokens, as a prefill's is."""
    return 1 if tokens == 1 else te.var("n")


def gguf_gemv(name: str, N: int, K: int, tokens: int = 1):
    """The model's quantized matmul (quantized.qmatmul_compute) over one GGUF type's layout."""
    t = TYPES[name]
    x = te.placeholder((1, _tokens(tokens), K), "float32", name="x")
    parts = [te.placeholder(shape, dtype, name=p) for p, (shape, dtype) in t.part_shapes(N, K).items()]
    stages = _decode_stages(t, parts, N, K)
    y = qmatmul_compute(x, N, K, lambda n, g, j, l: _type_weight(t, parts, n, g, j, l, stages),
                        (K // STEP, STEP // LANES, LANES), t.gemv_rows)
    return te.create_prim_func([x, *parts, y])


def group_gemv(bits: int, N: int, K: int, tokens: int = 1):
    """The model's quantized matmul over the group layout (f32 scale and min per 32 columns)."""
    x = te.placeholder((1, _tokens(tokens), K), "float32", name="x")
    qw = te.placeholder((N, K * bits // 32), "uint32", name="qweight")
    sc, mn = te.placeholder((N, K // 32), "float32", name="scales"), te.placeholder((N, K // 32), "float32", name="mins")
    y = qmatmul_compute(x, N, K, lambda n, g, j, l: _dequant_at(qw, sc, mn, bits, n, g, j, l),
                        (K // 32, 32 // bits, words_per_group(bits)))
    return te.create_prim_func([x, qw, sc, mn, y])


def f32_gemv(N: int, K: int, tokens: int = 1):
    x = te.placeholder((1, _tokens(tokens), K), "float32", name="x")
    w = te.placeholder((N, K), "float32", name="w")
    r = te.reduce_axis((0, K), name="k")
    return te.create_prim_func([x, w, te.compute((1, x.shape[1], N), lambda b, s, n: te.sum(x[b, s, r] * w[n, r], axis=r))])


@click.command()
@click.option("--rounds", default=10, show_default=True)
@click.option("--cache-mb", default=32, show_default=True, help="last-level cache size (lscpu)")
@click.option("--tokens", default=1, show_default=True,
              help="tokens per call: above 1, the prefill matmul (results in wasm_qgemv_tokens<T>.md/.json)")
@click.option("--shape", default=f"{SHAPE[0]}x{SHAPE[1]}", show_default=True,
              help="ROWSxCOLS of the matrix (another than the default: results in wasm_qgemv_<shape>.md/.json)")
@click.option("--types", default="", help="comma-separated GGUF types (and F32) to time; default every one")
@click.option("--int-dot", "int_dot", is_flag=True,
              help="also the int-dot kernel of each type it takes (results in wasm_qgemv_int_dot*.md/.json)")
def main(rounds: int, cache_mb: int, tokens: int, shape: str, types: str, int_dot: bool) -> None:
    load_before = os.getloadavg()
    try:
        N, K = (int(v) for v in shape.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--shape {shape!r}: expected ROWSxCOLS, e.g. 262144x640") from None
    wanted = [t.strip().upper() for t in types.split(",") if t.strip()] or [*TYPES, "F32"]
    unknown = sorted(set(wanted) - {*TYPES, "F32"})
    if unknown or K % 256 and any(TYPES[t].block == 256 for t in wanted if t in TYPES):
        raise SystemExit(f"--types {types!r}: unknown {unknown} or a 256-block type with {K} columns; "
                         f"choose from {', '.join([*TYPES, 'F32'])}")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((tokens, K)).astype(np.float32)
    funcs, spec = {}, []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)

        def add(name, func, arrays, w):
            funcs[name] = func.with_attr("global_symbol", name)
            files = []
            for i, a in enumerate(arrays):
                path = work / f"{name}.{i}.bin"
                path.write_bytes(np.ascontiguousarray(a).tobytes())
                files.append({"file": str(path), "bytes": a.nbytes, "shape": list(a.shape), "dtype": str(a.dtype)})
            (work / f"{name}.x").write_bytes(x.tobytes())
            (work / f"{name}.y").write_bytes((x @ w.T).astype(np.float32).tobytes())
            spec.append({"name": name, "n": N, "k": K, "tokens": tokens, "parts": files, "x": str(work / f"{name}.x"),
                         "expected": str(work / f"{name}.y")})

        for name in (t for t in TYPES if t in wanted):
            raw = synthetic_blocks(name, N, K)
            w = reference(name, raw)
            func, parts = gguf_gemv(name, N, K, tokens), list(pack(TYPES[name], raw).values())
            add(f"gguf_{name.lower()}", func, parts, w)
            if int_dot and use_int_dot(func) is not None:
                add(f"gguf_{name.lower()}_int_dot", use_int_dot(func), parts, w)
            if name in ("Q4_0", "Q4_1"):  # the same blocks in the group layout (f32 scale and min, as q4f32)
                q = from_gguf_blocks(raw, name)
                func = group_gemv(q.bits, N, K, tokens)
                add(f"group_{name.lower()}", func, [q.packed(), q.scales, q.mins], w)
                if int_dot and use_int_dot(func) is not None:
                    add(f"group_{name.lower()}_int_dot", use_int_dot(func), [q.packed(), q.scales, q.mins], w)
            del raw, w
        if "F32" in wanted:
            w = rng.standard_normal((N, K)).astype(np.float32)
            add("f32", f32_gemv(N, K, tokens), [w], w)
            del w
        wasm = work / "k.wasm"
        wasm.write_bytes(build_wasm(tvm.IRModule(funcs), list(funcs), BUILDS[0]))
        (work / "spec.json").write_text(json.dumps({"wasm": str(wasm), "rounds": rounds, "cache_mb": cache_mb,
                                                    "functions": spec}))
        out = subprocess.run(["node", str(ROOT / "bench" / "wasm_qgemv.mjs"), str(work / "spec.json")],
                             capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr[-2000:])
    results = json.loads(out.stdout.strip().splitlines()[-1])
    report = {"command": "python bench/wasm_qgemv.py" + (f" --rounds {rounds}" if rounds != 10 else "")
              + (f" --cache-mb {cache_mb}" if cache_mb != 32 else "") + (f" --tokens {tokens}" if tokens != 1 else "")
              + (f" --shape {N}x{K}" if (N, K) != SHAPE else "") + (f" --types {types}" if types else "")
              + (" --int-dot" if int_dot else ""),
              "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": load_before, "load_after": os.getloadavg(),
              "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
              "shape": [N, K], "tokens": tokens, "results": results}
    stem = ("wasm_qgemv" + ("_int_dot" if int_dot else "") + (f"_tokens{tokens}" if tokens != 1 else "")
            + (f"_{N}x{K}" if (N, K) != SHAPE else ""))
    (ROOT / "bench" / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    f32_ms = results["f32"]["ms"] if "f32" in results else None
    title = "decode GEMV" if tokens == 1 else f"matmul over {tokens} tokens (prefill)"
    lines = [f"# Quantized {title} on wasm SIMD128 (one thread, Node, weights streamed)", "",
             f"`{report['command']}` on {report['date']}, load average {load_before[0]:.1f} before, "
             f"{report['load_after'][0]:.1f} after; {report['node']}. One {N}x{K} matrix, dequantized inside "
             "the kernel; fastest call (median in the JSON), 64 MB of weight copies cycled (the L2 is 4 MiB; this machine's shared L3 is 480 MiB, so the copies stream from L3, not DRAM), rounds interleaved.", "",
             KERNELS_NOTE if tokens == 1 else TOKENS_NOTE, "", *([INT_DOT_NOTE, ""] if int_dot else []),
             "| kernel | ms | weight MB | weight GB/s | vs f32 | max abs error |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        vs_f32 = f"{f32_ms / r['ms']:.2f}x" if f32_ms else "-"
        lines.append(f"| {name} | {r['ms']:.3f} | {r['weight_bytes'] / 1e6:.2f} | {r['weight_gb_per_s']:.1f} | "
                     f"{vs_f32} | {r['max_abs_error']:.2e} |")
    (ROOT / "bench" / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
