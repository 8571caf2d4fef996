"""Layers over group-quantized weights (layout: webrt/quantize.py). Dequantization happens inside
the matmul / gather kernels: no dequantized copy of a weight ever exists on the device."""

from __future__ import annotations

from tvm import te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import op

from ..quantize import GROUP, words_per_group


class QuantizedWeight(nn.Module):
    def __init__(self, rows: int, cols: int, bits: int):
        self.rows, self.cols, self.bits = rows, cols, bits
        self.qweight = nn.Parameter((rows, cols * bits // 32), "uint32")
        self.scales = nn.Parameter((rows, cols // GROUP), "float32")
        self.mins = nn.Parameter((rows, cols // GROUP), "float32")


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


def quantized_matmul(x: nn.Tensor, w: QuantizedWeight) -> nn.Tensor:
    """x [b, s, cols] @ W^T -> [b, s, rows]. The reduction runs over (group, j, l) rather than one
    column index, so its innermost axis l walks W consecutive columns: the CPU schedule
    (webrt/compile/cpu_schedule.py) turns it into SIMD lanes."""
    bits, cols, rows = w.bits, w.cols, w.rows
    words = words_per_group(bits)

    def compute(x: te.Tensor, qweight: te.Tensor, scales: te.Tensor, mins: te.Tensor):
        g = te.reduce_axis((0, cols // GROUP), name="g")
        j = te.reduce_axis((0, 32 // bits), name="j")
        l = te.reduce_axis((0, words), name="l")
        return te.compute((x.shape[0], x.shape[1], rows), lambda b, s, n: te.sum(
            x[b, s, g * GROUP + j * words + l] * _dequant_at(qweight, scales, mins, bits, n, g, j, l),
            axis=[g, j, l]), name="qmatmul")

    return op.tensor_expr_op(compute, "qmatmul", [x, w.qweight, w.scales, w.mins])


def quantized_embed(w: QuantizedWeight, ids: nn.Tensor) -> nn.Tensor:
    """Rows of the table for token ids [b, s] -> [b, s, cols]."""
    bits = w.bits

    def compute(ids: te.Tensor, qweight: te.Tensor, scales: te.Tensor, mins: te.Tensor):
        return te.compute((ids.shape[0], ids.shape[1], w.cols), lambda b, s, h: _dequant(
            qweight, scales, mins, bits, ids[b, s], h), name="qembed")

    return op.tensor_expr_op(compute, "qembed", [ids, w.qweight, w.scales, w.mins])


class QLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool, bits: int):
        self.weight = QuantizedWeight(out_features, in_features, bits)
        self.bias = nn.Parameter((out_features,), "float32") if bias else None

    def forward(self, x: nn.Tensor) -> nn.Tensor:
        y = quantized_matmul(x, self.weight)
        return y + self.bias if self.bias is not None else y
