"""Layers over quantized weights. Dequantization happens inside the matmul / gather kernels: no
dequantized copy of a weight ever exists on the device.

Two layouts:
  * GGUF weight types (webrt/weight_types.py: Q4_0, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K), each matrix in its
    own type's parts (the GGUF's own f16 scales, 1.00-1.06x its bytes), decoded by the type's
    description inside the kernel;
  * the group layout of webrt/quantize.py (4-bit codes with f32 scale and min, or 8-bit codes with
    an f32 scale, per 32 weights): float checkpoints quantized to q4f32, and GGUF Q4_1
    (GROUP_LAYOUT_BITS below).

Families choose a layer per matrix with `QLinear(in, out, bias, kind)` and the embedding table with
`QuantizedWeight(vocab, hidden, kind)`, where kind is the matrix's GGUF type name (from
`ckpt.code_bits()`) or a code width (4 or 8) of the group layout; `quantized_matmul` and
`quantized_embed` work on either.
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import op

from ..errors import WebrtError
from ..quantize import GROUP, Quantized, from_gguf_blocks, quantize_blocks, quantize_q4, row_fallback, words_per_group
from ..weight_types import GEMV_ROWS_ATTR, LANES, STEP, TIR_OPS, TYPES, Reader, pack

# GGUF types loaded into the group layout (their blocks map onto it exactly), with their code
# width. Q4_1's own layout (f16 scale and min, 1.00x the GGUF bytes, where the group layout's f32
# ones cost 1.2x) is as fast or faster on WebGPU now that the GPU schedules decode once per 32
# weights (bench/webgpu_qdecode.md), but its wasm GEMV is 14% slower at 2048 x 2048
# (bench/wasm_qgemv.md) and 20-23% at the default model's 1536 x 576, and the default model is
# Q4_1: speed wins until the wasm decode catches up. Q4_0 (no shipped model) keeps its own layout
# (1.00x, not 1.33x): its wasm GEMV measured 0-10% slower (equal at 2048 x 2048 and 1536 x 576).
GROUP_LAYOUT_BITS = {"Q4_1": 4}


def layout_of(kind) -> str:
    """"group" or "gguf" for a kind QuantizedWeight accepts; a clear error for anything else."""
    if kind in (4, 8) or kind in GROUP_LAYOUT_BITS:
        return "group"
    if kind in TYPES:
        return "gguf"
    raise WebrtError(f"weight type {kind!r} has no quantized layout; supported: {', '.join(TYPES)}")


class QuantizedWeight(nn.Module):
    """A matrix [rows, cols] in a quantized layout; `kind` is a GGUF type name or a code width."""

    def __init__(self, rows: int, cols: int, kind):
        self.rows, self.cols, self.kind = rows, cols, kind
        if layout_of(kind) == "group":
            self.wtype = None
            self.bits = GROUP_LAYOUT_BITS.get(kind, kind)
            self.qweight = nn.Parameter((rows, cols * self.bits // 32), "uint32")
            self.scales = nn.Parameter((rows, cols // GROUP), "float32")
            self.mins = nn.Parameter((rows, cols // GROUP), "float32")
        else:
            # a K-quant asked for rows that hold no whole super-block: llama.cpp's fallback type
            self.kind = kind = row_fallback(kind, cols)
            self.wtype, self.bits = TYPES[kind], None
            if cols % self.wtype.block:
                raise WebrtError(f"a {kind} matrix needs a multiple of {self.wtype.block} columns, not {cols}")
            for name, (shape, dtype) in self.wtype.part_shapes(rows, cols).items():
                setattr(self, name, nn.Parameter(shape, dtype))

    @property
    def part_names(self) -> list[str]:
        return ["qweight", "scales", "mins"] if self.wtype is None else [p.name for p in self.wtype.parts]

    def tensors(self) -> list:
        return [getattr(self, name) for name in self.part_names]

    def arrays(self, source) -> dict[str, np.ndarray]:
        """The parameters' values from the checkpoint: `source` is (GGUF type name, uint8 blocks
        [rows, bytes]) for a tensor kept in blocks, or a float32 matrix to quantize here."""
        if self.wtype is not None:
            if not isinstance(source, tuple):  # float weights: llama.cpp's quantizer for this type
                source = (self.wtype.name, quantize_blocks(source, self.wtype.name))
            if source[0] != self.wtype.name:
                raise WebrtError(f"internal: a {self.wtype.name} weight got {source[0]} blocks")
            return pack(self.wtype, source[1])
        if isinstance(source, tuple):
            q = from_gguf_blocks(source[1], source[0])
        else:
            q = quantize_q4(source) if self.bits == 4 else None
            if q is None:
                raise WebrtError("internal: float weights are quantized to 4-bit codes only in the group layout")
        return {"qweight": q.packed(), "scales": q.scales, "mins": q.mins}


def quantized_weights(model: nn.Module) -> dict[str, QuantizedWeight]:
    """Every QuantizedWeight of a model by its parameter prefix (e.g. `model.layers.0.mlp.up_proj.weight`)."""
    from tvm.relax.frontend.nn.core import _attribute_finder

    return dict(_attribute_finder(model, "", lambda x: isinstance(x, QuantizedWeight)))


# ---- the group layout ------------------------------------------------------------------------------

def _dequant_at(qweight: te.Tensor, scales: te.Tensor, mins: te.Tensor, bits: int, row, g, j, l):
    """W[row, g*32 + j*W + l] in the interleaved layout (webrt/quantize.py)."""
    words = words_per_group(bits)
    word = qweight[row, g * words + l]
    if bits == 8:
        # signed bytes: move byte j to the top, then an arithmetic shift sign-extends it (two
        # operations, where mask + compare + select took four)
        top = tirx.reinterpret("int32", word << tirx.Cast("uint32", (3 - j) * 8))
        value = tirx.Cast("float32", top >> tirx.const(24, "int32"))
    else:
        code = (word >> tirx.Cast("uint32", j * bits)) & tirx.const((1 << bits) - 1, "uint32")
        value = tirx.Cast("float32", code)
    return value * scales[row, g] + mins[row, g]


def _dequant(qweight: te.Tensor, scales: te.Tensor, mins: te.Tensor, bits: int, row, col):
    words = words_per_group(bits)
    return _dequant_at(qweight, scales, mins, bits, row, col // GROUP, col % GROUP // words, col % words)


# ---- GGUF weight types -------------------------------------------------------------------------------

def _type_weight(wtype, parts: list[te.Tensor], row, g, j, l, stages: list[te.Tensor] | None = None):
    """The type's decode (webrt/weight_types.py) of W[row, 32 g + 4 j + l] as a TIR expression;
    with stages (_decode_stages), its sub-block's scale and offset are read from them."""
    by_name = dict(zip([p.name for p in wtype.parts], parts))
    reader = Reader(wtype, lambda name, index: by_name[name][row, index], g, j, l, TIR_OPS)
    if stages is None:
        return wtype.value(reader)
    return wtype.value(reader, *(stage[row, wtype.sub_index(g, j)] for stage in stages))


def _decode_stages(wtype, parts: list[te.Tensor], rows: int, cols: int) -> list[te.Tensor]:
    """Every sub-block's scale (and offset) as stages of their own, "qdecode_*": the wasm schedule
    computes them once per sub-block inside the matmul's loops (cpu_schedule.py), where inline
    they were decoded again for every weight (6-bit packed K-quant scales: bench/wasm_qgemv.md);
    the GPU schedules compute them once per 32-column step, into registers (schedule.py
    place_decode_stages)."""
    by_name = dict(zip([p.name for p in wtype.parts], parts))

    def reader(n, s):
        g, j = wtype.sub_position(s)
        return Reader(wtype, lambda name, index: by_name[name][n, index], g, j, 0, TIR_OPS)

    shape = (rows, cols // wtype.sub_block)
    stages = [te.compute(shape, lambda n, s: wtype.scale(reader(n, s)), name="qdecode_scale")]
    if wtype.offset is not None:
        stages.append(te.compute(shape, lambda n, s: wtype.offset(reader(n, s)), name="qdecode_offset"))
    return stages


def _many_tokens(x: te.Tensor) -> bool:
    """A prefill or a batch: some token axis of x has a symbolic extent (a decode step's are 1)."""
    return any(not isinstance(extent, tirx.IntImm) for extent in x.shape[:-1])


def qmatmul_compute(x: te.Tensor, rows: int, cols: int, weight_at, steps: tuple[int, int, int],
                    gemv_rows: int | None = None) -> te.Tensor:
    """x [b, s, cols] @ W^T -> [b, s, rows] where weight_at(n, g, j, l) is W[n, g*J*L + j*L + l] for
    steps (G, J, L): the layout's reduction steps, whose innermost l walks consecutive columns.

    One token (a decode GEMV): the reduction runs over (g, j, l) with the weight decoded inside it,
    each weight read and decoded once; the CPU schedule turns l into SIMD lanes.
    Many tokens: the weight is decoded into a stage of its own, "qdequant" [rows, cols], that the
    matmul reads. The wasm schedule computes that stage a register block of weight rows at a time,
    right before the token-blocked matmul uses it for every token (cpu_schedule._decode_rows_ahead),
    so each weight is decoded once per call instead of once per token (bench/wasm_qgemv_tokens16.md);
    the GPU schedules inline it back, which gives the one-token form's kernel. gemv_rows (the weight
    type's) annotates the one-token block with its rows per register block for the CPU schedule."""
    _, J, L = steps
    g, j, l = (te.reduce_axis((0, e), name=n) for e, n in zip(steps, "gjl"))
    attrs = {}
    if not _many_tokens(x):
        weight = weight_at
        if gemv_rows is not None:
            attrs[GEMV_ROWS_ATTR] = gemv_rows
    else:
        stage = te.compute((rows, cols), lambda n, c: weight_at(n, c // (J * L), c % (J * L) // L, c % L),
                           name="qdequant")

        def weight(n, g, j, l):
            return stage[n, g * J * L + j * L + l]
    return te.compute((x.shape[0], x.shape[1], rows), lambda b, s, n: te.sum(
        x[b, s, g * J * L + j * L + l].astype("float32") * weight(n, g, j, l), axis=[g, j, l]), name="qmatmul",
        attrs=attrs)


def quantized_matmul(x: nn.Tensor, w) -> nn.Tensor:
    """x [b, s, cols] @ W^T -> [b, s, rows], float32 (an f16 x is read as float32: the sums stay
    f32); qmatmul_compute says how."""
    rows, cols = w.rows, w.cols
    wtype = getattr(w, "wtype", None)
    if wtype is not None:
        def compute(x: te.Tensor, *parts: te.Tensor):
            stages = _decode_stages(wtype, parts, rows, cols)
            return qmatmul_compute(x, rows, cols, lambda n, g, j, l: _type_weight(wtype, parts, n, g, j, l, stages),
                                   (cols // STEP, STEP // LANES, LANES), wtype.gemv_rows)

        return op.tensor_expr_op(compute, "qmatmul", [x, *w.tensors()])

    bits = w.bits
    words = words_per_group(bits)

    def compute_group(x: te.Tensor, qweight: te.Tensor, scales: te.Tensor, mins: te.Tensor):
        return qmatmul_compute(x, rows, cols, lambda n, g, j, l: _dequant_at(qweight, scales, mins, bits, n, g, j, l),
                               (cols // GROUP, 32 // bits, words))

    return op.tensor_expr_op(compute_group, "qmatmul", [x, w.qweight, w.scales, w.mins])


def quantized_embed(w, ids: nn.Tensor) -> nn.Tensor:
    """Rows of the table for token ids [b, s] -> [b, s, cols]."""
    wtype = getattr(w, "wtype", None)
    if wtype is not None:
        def compute(ids: te.Tensor, *parts: te.Tensor):
            return te.compute((ids.shape[0], ids.shape[1], w.cols), lambda b, s, h: _type_weight(
                wtype, parts, ids[b, s], h // STEP, h % STEP // LANES, h % LANES), name="qembed")

        return op.tensor_expr_op(compute, "qembed", [ids, *w.tensors()])

    bits = w.bits

    def compute_group(ids: te.Tensor, qweight: te.Tensor, scales: te.Tensor, mins: te.Tensor):
        return te.compute((ids.shape[0], ids.shape[1], w.cols), lambda b, s, h: _dequant(
            qweight, scales, mins, bits, ids[b, s], h), name="qembed")

    return op.tensor_expr_op(compute_group, "qembed", [ids, w.qweight, w.scales, w.mins])


class QLinear(nn.Module):
    """A linear layer over a QuantizedWeight of `kind` (a GGUF type name or a code width)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, kind=4):
        self.weight = QuantizedWeight(out_features, in_features, kind)
        self.bias = nn.Parameter((out_features,), "float32") if bias else None

    @staticmethod
    def for_type(kind, in_features: int, out_features: int, bias: bool) -> nn.Module:
        """The layer for one matrix: float32 nn.Linear for None / F32 / F16 / BF16, else a QLinear."""
        if kind in (None, "F32", "F16", "BF16"):
            return nn.Linear(in_features, out_features, bias=bias)
        return QLinear(in_features, out_features, bias, kind)

    def forward(self, x: nn.Tensor, out_dtype: str | None = None) -> nn.Tensor:
        """In x's dtype unless out_dtype says otherwise; the sum and the bias are float32."""
        y = quantized_matmul(x, self.weight)
        y = y + self.bias if self.bias is not None else y
        dtype = out_dtype or x.dtype
        return y if y.dtype == dtype else op.astype(y, dtype)


__all__ = ["GROUP_LAYOUT_BITS", "QLinear", "Quantized", "QuantizedWeight", "layout_of", "quantized_embed",
           "qmatmul_compute", "quantized_matmul", "quantized_weights"]
