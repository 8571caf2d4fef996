"""Tables too large for one WebGPU binding, held as parts of consecutive rows.

WebGPU binds each weight tensor as one storage buffer, and `maxStorageBufferBindingSize` is
128 MiB by default (the spec's default; many phones and Mesa's lavapipe allow no more). Gemma 3's
262,144 x 640 embedding in Q8_0 has a 160 MiB code plane. Before export, `split_large_tables`
replaces the embedding table and an untied LM head whose largest tensor exceeds the limit by a
`RowSplit`: the same layer type over row ranges [start, start + rows) of the vocabulary, each part
within the limit. The embedding gather reads every part with a clamped row and keeps the one whose
range holds the token (one kernel); the LM head runs one matmul per part and concatenates the
logits. Every part tensor has the original's name with `.parts.<i>` inserted before the tensor's
own name (`model.embed_tokens.parts.1.q`), rows in order.
"""

from __future__ import annotations

import math

import numpy as np
from tvm import te, tirx, topi
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import op

from .quantized import QLinear, QuantizedWeight, _dequant, _type_weight
from ..weight_types import LANES, STEP

# WebGPU's default maxStorageBufferBindingSize: an artifact whose tensors are all within it binds
# on every adapter.
DEFAULT_MAX_BINDING_BYTES = 128 * 2 ** 20
OPAQUE = 8  # relax's OpPatternKind kOpaque: FuseOps keeps the function on its own


class RowSplit(nn.Module):
    """A table of `rows` rows (nn.Embedding, QuantizedWeight, nn.Linear or QLinear) as parts, part
    i holding rows starts[i]..starts[i] + part.rows - 1."""

    def __init__(self, parts: list[nn.Module], starts: list[int]):
        self.parts = nn.ModuleList(parts)
        self.starts = starts

    def forward(self, x: nn.Tensor) -> nn.Tensor:
        """The split LM head: x [b, s, hidden] -> logits [b, s, rows], one matmul per part."""
        return concat_logits([part(x) for part in self.parts])


def concat_logits(parts: list[nn.Tensor]) -> nn.Tensor:
    """Logits [b, s, rows_i] of each part, concatenated along the vocabulary, as a kernel of its own:
    fused with the sampling kernels after it, each part would be one more storage binding there
    (over WebGPU's default maxStorageBuffersPerShaderStage of 8 with two parts)."""

    def compute(*parts: te.Tensor):
        return topi.concatenate(parts, axis=2)

    return op.tensor_expr_op(compute, "concat_logits", parts, attrs={"op_pattern": OPAQUE})


def _rows(module: nn.Module) -> int:
    if isinstance(module, nn.Embedding):
        return int(module.num)
    if isinstance(module, QuantizedWeight):
        return module.rows
    if isinstance(module, QLinear):
        return module.weight.rows
    return int(module.out_features)  # nn.Linear


def _part(module: nn.Module, rows: int) -> nn.Module:
    """A layer like `module` with `rows` rows."""
    if isinstance(module, nn.Embedding):
        return nn.Embedding(rows, int(module.dim))
    if isinstance(module, QuantizedWeight):
        return QuantizedWeight(rows, module.cols, module.kind)
    if isinstance(module, QLinear):
        return QLinear(module.weight.cols, rows, module.bias is not None, module.weight.kind)
    return nn.Linear(int(module.in_features), rows, bias=module.bias is not None)


def _tensor_names(prefix: str, module: nn.Module) -> list[str]:
    return [f"{prefix}.{name}" for name, _ in module.named_parameters()]


def split_large_tables(model: nn.Module, weights: dict[str, np.ndarray], limit: int) -> dict[str, int]:
    """Split the causal LM's embedding table and untied LM head where one of their tensors is over
    `limit` bytes, in the model and in `weights` (name -> array, sliced by rows). Returns the
    number of parts of each table split, by prefix."""
    split = {}
    for prefix, owner, attr in (("model.embed_tokens", model.model, "embed_tokens"), ("lm_head", model, "lm_head")):
        table = getattr(owner, attr)
        if table is None:
            continue
        names = _tensor_names(prefix, table)
        rows = _rows(table)
        row_bytes = max(weights[name].nbytes // rows for name in names)
        if row_bytes * rows <= limit:
            continue
        if row_bytes > limit:
            from ..errors import WebrtError

            raise WebrtError(f"{prefix}: one row takes {row_bytes} bytes, over the binding limit of {limit} bytes; "
                             "raise --max-binding-size")
        count = math.ceil(rows / (limit // row_bytes))
        per_part = math.ceil(rows / count)
        starts = list(range(0, rows, per_part))
        parts = [_part(table, min(per_part, rows - start)) for start in starts]
        for name in names:
            array = weights.pop(name)
            own = name[len(prefix) + 1:]
            for i, start in enumerate(starts):
                weights[f"{prefix}.parts.{i}.{own}"] = np.ascontiguousarray(array[start:start + per_part])
        setattr(owner, attr, RowSplit(parts, starts))
        split[prefix] = len(parts)
    return split


def split_embed(table: RowSplit, ids: nn.Tensor) -> nn.Tensor:
    """Rows of a split table for token ids [b, s] -> [b, s, cols], in one kernel: every part is read
    at a row clamped into its range (no out-of-bounds read on any backend), and the part whose
    range holds the token gives the value."""
    first = table.parts[0]
    quantized = isinstance(first, QuantizedWeight)
    cols = first.cols if quantized else int(first.dim)
    tensors = [t for part in table.parts for t in (part.tensors() if quantized else [part.weight])]
    per_part = len(tensors) // len(table.parts)
    sizes = [_rows(part) for part in table.parts]

    def value(part: nn.Module, tensors: list[te.Tensor], row, h):
        if not quantized:
            return tensors[0][row, h]
        if part.wtype is not None:
            return _type_weight(part.wtype, tensors, row, h // STEP, h % STEP // LANES, h % LANES)
        return _dequant(*tensors, part.bits, row, h)

    def compute(ids: te.Tensor, *flat: te.Tensor):
        def gather(b, s, h):
            token = ids[b, s]
            out = None
            for i in reversed(range(len(table.parts))):  # the last part first, so part 0 is outermost
                start, size = table.starts[i], sizes[i]
                row = tirx.max(tirx.min(token - start, size - 1), 0)
                got = value(table.parts[i], list(flat[i * per_part:(i + 1) * per_part]), row, h)
                out = got if out is None else tirx.Select(token < start + size, got, out)
            return out

        return te.compute((ids.shape[0], ids.shape[1], cols), gather, name="split_embed")

    return op.tensor_expr_op(compute, "split_embed", [ids, *tensors])


__all__ = ["DEFAULT_MAX_BINDING_BYTES", "RowSplit", "split_embed", "split_large_tables"]
