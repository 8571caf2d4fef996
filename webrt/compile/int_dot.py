"""The integer-dot path of the wasm builds: a fused function's 4-bit or Q8_0 matmul (the `qmatmul`
block of webrt/models/quantized.py) becomes one call of the hand-written kernel in int_dot.c, which
quantizes the activations to 16-bit integers per 32 columns and multiplies them with integer dot
products.
The rest of the function (a fused add, silu or multiply, and the GGUF types' decode stages that
give the kernel its float32 scales) stays TIR and is scheduled as before.

The block qualifies when its weight is 4-bit codes c (the group layout's qweight, or the code
plane of GGUF Q4_0 / Q4_1 / Q4_K: the same words) with one scale s per 32 columns, read as
`c * s + m` (the group layout's mins, or the decode stage's offsets of Q4_1 / Q4_K) or as
`(c - 8) * s` (Q4_0, whose min is -8 s); or when it is GGUF Q8_0's signed 8-bit codes read as
`c * s` (the LM head of both real models: 23-48% of a decode step with the f32 kernel).

Why a C kernel: TVM's TIR has no int16 pairwise dot product, and LLVM does not form
i32x4.dot_i16x8_s from the widening multiplies TVM emits; wasm_simd128.h's intrinsics do. The
kernel is linked into the same module by the existing link step (wasm.py), and the plan and the
function's signature do not change.

Which matmuls take the kernel is chosen at compile time (`int_dot=` in compile_module, `--int-dot`
on the command line), by measurement; which is faster depends on the CPU, so the other kernel of
each one-token matmul also ships as a tuner candidate (tuning.wasm_candidates):
  decode  the default: every one-token (decode) matmul of 4-bit or Q8_0 codes. On a Zen 3 EPYC the
          default model's decode step took 1.7x as long with the f32 kernels (bench/native.md of
          2026-12-03 afternoon); on a Zen 4 one the 4-bit GEMVs ran 0.89-0.99x as fast as the f32
          ones, and Q8_0's 2.2-2.6x as fast. A matmul over many tokens decodes each weight once for
          all of them (the qdequant stage), so the conversions are not its bound;
  q8_0    one-token matmuls of Q8_0 matrices only (the LM head of both real models);
  all     many-token matmuls too: the default model's prefill took 1.9x as long (bench/native.md
          of 2026-12-02);
  none    the exact f32 kernels everywhere.
The results differ from the exact f32 kernels only by the activations' 16-bit rounding: on the
default model a perplexity change of 0.005%, and the same greedy tokens as transformers on both
real models (bench/int_dot.md, bench/gemma3_270m_int_dot.md).
"""

from __future__ import annotations

from pathlib import Path

import tvm
from tvm import tirx
from tvm.ir.prim.expr import BitwiseAnd, RShift
from tvm.s_tir import Schedule
from tvm.s_tir.stmt import SBlock, SBlockRealize
from tvm.tirx.stmt import BufferRegion

from ..quantize import GROUP

INT_DOT_C = Path(__file__).with_name("int_dot.c")
EXTERN = "webrt_int_dot"
CODE_BITS = {"offset": 4, "minus8": 4, "int8": 8}  # _weight_form -> bits per code
# --int-dot -> (the code widths that take the kernel, whether many-token matmuls do)
INT_DOT_MODES = {"decode": ((4, 8), False), "q8_0": ((8,), False), "all": ((4, 8), True), "none": ((), False)}
DEFAULT_INT_DOT = "decode"


def _int_dot_block(block: SBlock):
    """(x, qweight, scales, mins or None, bits, out) when the block is a qmatmul of one of the forms
    above (mins None: Q4_0's -8 s, or Q8_0 with no min), else None."""
    if block.name_hint != "qmatmul" or len(block.reads) not in (3, 4) or len(block.writes) != 1:
        return None
    x, qweight, scales, *mins = (r.source for r in block.reads)
    mins = mins[0] if mins else None
    out = block.writes[0].source
    k = x.shape[-1]
    form = _weight_form(block)
    if form is None or (mins is None) == (form == "offset"):
        return None
    bits = CODE_BITS[form]
    if not (x.dtype == "float32" and qweight.dtype == "uint32" and scales.dtype == "float32"
            and (mins is None or mins.dtype == "float32") and out.dtype == "float32"
            and len(qweight.shape) == 2 and len(scales.shape) == 2
            and isinstance(k, tirx.IntImm) and k.value % GROUP == 0
            and int(qweight.shape[1]) * 32 // bits == k.value and int(scales.shape[1]) * GROUP == k.value):
        return None
    # the kernel writes out as a dense [tokens, rows] matrix: out must be exactly the block's
    # output (not a slice of a larger buffer, as a fused concatenation would write)
    spatial = [iv.var for iv in block.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
    region = block.writes[0].region
    if (len(out.shape) != len(x.shape) or not _same(out.shape[-1], qweight.shape[0])
            or not all(_same(a, b) for a, b in zip(out.shape[:-1], x.shape[:-1]))
            or len(region) != len(spatial) or not all(r.min.same_as(v) for r, v in zip(region, spatial))):
        return None
    return x, qweight, scales, mins, bits, out


def _weight_form(block: SBlock) -> str | None:
    """"offset" for acc + x * (float(c) * s + m), "minus8" for acc + x * (float(int(c) - 8) * s),
    with c = (word >> shift) & 15; "int8" for acc + x * (float(c) * s) with c a signed byte of the
    word (reinterpret(int32, word << shift) >> 24, Q8_0); None for anything else (5- or 6-bit codes)."""
    value = block.body.value if isinstance(block.body, tirx.BufferStore) else None
    if not isinstance(value, tirx.Add) or not isinstance(value.b, tirx.Mul):
        return None
    w = value.b.b

    def is_code(e) -> bool:
        return (isinstance(e, BitwiseAnd) and isinstance(e.b, tirx.IntImm) and e.b.value == 15
                and isinstance(e.a, RShift))

    if isinstance(w, tirx.Add) and isinstance(w.a, tirx.Mul) and isinstance(w.a.a, tirx.Cast) and is_code(w.a.a.value):
        return "offset"
    if (isinstance(w, tirx.Mul) and isinstance(w.a, tirx.Cast) and isinstance(w.a.value, tirx.Sub)
            and isinstance(w.a.value.a, tirx.Cast) and is_code(w.a.value.a.value)
            and isinstance(w.a.value.b, tirx.IntImm) and w.a.value.b.value == 8):
        return "minus8"
    if (isinstance(w, tirx.Mul) and isinstance(w.a, tirx.Cast) and isinstance(w.a.value, RShift)
            and isinstance(w.a.value.b, tirx.IntImm) and w.a.value.b.value == 24
            and isinstance(w.a.value.a, tvm.ir.expr.Call) and w.a.value.a.op.name == "tirx.reinterpret"):
        return "int8"
    return None


def _same(a, b) -> bool:
    """The same extent: one shape variable, or equal constants."""
    return a.same_as(b) or (isinstance(a, tirx.IntImm) and isinstance(b, tirx.IntImm) and a.value == b.value)


def _find(stmt, widths: tuple[int, ...]):
    """The buffers of a qmatmul block inside a loop nest that qualifies with codes of one of these
    widths, or None."""
    if isinstance(stmt, tirx.For):
        return _find(stmt.body, widths)
    if isinstance(stmt, tirx.SeqStmt):
        return next((found for s in stmt.seq if (found := _find(s, widths)) is not None), None)
    if isinstance(stmt, SBlockRealize):
        found = _int_dot_block(stmt.block)
        return found if found is not None and found[4] in widths else _find(stmt.block.body, widths)
    return None


def _whole(buffer):
    return BufferRegion(buffer, [tvm.ir.Range.from_min_extent(0, e) for e in buffer.shape])


def _call(x, qweight, scales, mins, bits, out) -> SBlockRealize:
    """An opaque block that runs the kernel over whole buffers (as te.extern would); without mins
    the kernel is told to use -8 * scale (Q4_0) or no min (8-bit codes)."""
    m = tirx.const(1, "int64")
    for extent in x.shape[:-1]:
        m = m * extent
    inputs = (x, qweight, scales) if mins is None else (x, qweight, scales, mins)
    call = tirx.call_extern("int32", EXTERN, x.data, qweight.data, scales.data, (scales if mins is None else mins).data,
                            tirx.const(int(mins is None and bits == 4), "int32"), tirx.const(bits, "int32"), out.data,
                            tirx.Cast("int32", m), tirx.Cast("int32", out.shape[-1]), tirx.Cast("int32", x.shape[-1]))
    block = SBlock([], [_whole(b) for b in inputs], [_whole(out)], "qmatmul_int_dot", tirx.Evaluate(call))
    return SBlockRealize([], True, block)


def _inline_dequant_stage(func: tirx.PrimFunc) -> tirx.PrimFunc:
    sch = Schedule(tvm.IRModule({"main": func}))
    try:
        sch.compute_inline(sch.get_sblock("qdequant"))
    except (tvm.s_tir.ScheduleError, ValueError):
        return func  # no such stage
    return sch.mod["main"]


def use_int_dot(func: tirx.PrimFunc, mode: str = "all") -> tirx.PrimFunc | None:
    """func with its 4-bit or Q8_0 matmul (a loop nest of the root block) replaced by the int-dot
    kernel's call, where mode (INT_DOT_MODES) takes its code width; None when it has none. A matmul
    over many tokens reads its weight from a "qdequant" stage (quantized.qmatmul_compute): inlined
    first, it is the one-token form again."""
    widths, many_tokens = INT_DOT_MODES[mode]
    if not widths:
        return None
    inlined = _inline_dequant_stage(func)
    if inlined is not func and not many_tokens:
        return None
    func = inlined
    realize = func.body
    if not isinstance(realize, SBlockRealize):
        return None
    root = realize.block
    nests = list(root.body.seq) if isinstance(root.body, tirx.SeqStmt) else [root.body]
    for i, nest in enumerate(nests):
        if isinstance(nest, tirx.For) and (found := _find(nest, widths)) is not None:
            nests[i] = _call(*found)
            body = tirx.SeqStmt(nests) if len(nests) > 1 else nests[0]
            new_root = SBlock(root.iter_vars, root.reads, root.writes, root.name_hint, body, root.init,
                              root.alloc_buffers, root.match_buffers, root.annotations)
            return func.with_body(SBlockRealize(realize.iter_values, realize.predicate, new_root))
    return None
