"""Token sampling on the device, so a step reads back one token id instead of the whole logits.

    penalize  (in place)  repetition / frequency / presence penalties for the tokens seen so far
    choose                greedy argmax when temperature is 0, else the Gumbel-max trick:
                          argmax(logits / T + g) with g = -log(-log(u)) samples softmax(logits / T)
                          exactly; u comes from a counter-based hash of (seed, token id), so a
                          seed reproduces the same tokens.

Top-k and top-p need the sorted distribution; the shell reads the (penalized) logits back for them.
"""

from __future__ import annotations

from tvm import te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import op
from tvm.script import tirx as T

# params tensor layout: [temperature, repetition_penalty, frequency_penalty, presence_penalty]
SAMPLING_PARAMS = 4


def penalize(logits: nn.Tensor, token_ids: nn.Tensor, counts: nn.Tensor, params: nn.Tensor) -> nn.Tensor:
    """logits [1, 1, vocab]; token_ids [m] distinct ids seen so far (prompt and reply); counts [m]
    how often each occurs in the reply. The repetition penalty (Hugging Face's: divide positive
    logits, multiply negative ones) applies to every listed id; the frequency and presence
    penalties (OpenAI's) only to ids the reply holds."""
    vocab = int(logits.shape[2])

    # Scheduled by hand (one thread per penalized token): dlight's Fallback cannot bind a scatter.
    @T.prim_func(private=True, s_tir=True)
    def apply(var_logits: T.handle, var_ids: T.handle, var_counts: T.handle, var_params: T.handle):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        m = T.int64()
        x = T.match_buffer(var_logits, (1, 1, vocab), "float32")
        ids = T.match_buffer(var_ids, (m,), "int32")
        counts = T.match_buffer(var_counts, (m,), "float32")
        p = T.match_buffer(var_params, (SAMPLING_PARAMS,), "float32")
        for bx in T.thread_binding((m + 63) // 64, thread="blockIdx.x"):
            for tx in T.thread_binding(64, thread="threadIdx.x"):
                with T.sblock("penalize"):
                    vi = T.axis.spatial(m, bx * 64 + tx)
                    T.where(bx * 64 + tx < m)
                    T.reads(x[0, 0, 0:vocab], ids[vi], counts[vi], p[0:SAMPLING_PARAMS])
                    T.writes(x[0, 0, 0:vocab])
                    x[0, 0, ids[vi]] = T.if_then_else(x[0, 0, ids[vi]] > T.float32(0), x[0, 0, ids[vi]] / p[1],
                                                      x[0, 0, ids[vi]] * p[1]) - counts[vi] * p[2] \
                        - T.if_then_else(counts[vi] > T.float32(0), p[3], T.float32(0))

    return op.tensor_ir_inplace_op(apply, "penalize", [logits, token_ids, counts, params], 0,
                                   nn.Tensor.placeholder(logits.shape, logits.dtype))


def _uniform(seed, index):
    """A uniform in (0, 1) from a 32-bit integer hash of (seed, index) (a "lowbias32" finalizer)."""
    u32 = lambda v: tirx.const(v, "uint32")  # noqa: E731
    x = tirx.Cast("uint32", index) * u32(0x9E3779B9) + tirx.Cast("uint32", seed)
    x = x ^ (x >> u32(16))
    x = x * u32(0x7FEB352D)
    x = x ^ (x >> u32(15))
    x = x * u32(0x846CA68B)
    x = x ^ (x >> u32(16))
    return (tirx.Cast("float32", x >> u32(8)) + tirx.const(0.5, "float32")) * tirx.const(1.0 / (1 << 24), "float32")


def choose(logits: nn.Tensor, params: nn.Tensor, seed) -> nn.Tensor:
    """Token id [1] (int32) from logits [1, 1, vocab]: greedy or Gumbel-max, see the module doc."""

    def scores(x: te.Tensor, p: te.Tensor, seed):
        def value(v):
            gumbel = -tirx.log(-tirx.log(_uniform(seed, v)))
            return tirx.Select(p[0] > tirx.const(0, "float32"), x[0, 0, v] / p[0] + gumbel, x[0, 0, v])

        return te.compute((x.shape[2],), value, name="scores")

    s = op.tensor_expr_op(scores, "sampling_scores", [logits, params, seed])
    return op.tensor_expr_op(_argmax_i32, "argmax", [s])[0]


def _argmax_i32(s: te.Tensor) -> list[te.Tensor]:
    """Index [1] of the largest value (lowest index on ties), and the value. relax's argmax
    reduces in int64, which WGSL does not have. Both results are outputs: a kernel cannot
    allocate a global intermediate on WebGPU."""

    def combine(x, y):
        take_x = tirx.Or(x[1] > y[1], tirx.And(x[1] == y[1], x[0] < y[0]))
        return tirx.Select(take_x, x[0], y[0]), tirx.Select(take_x, x[1], y[1])

    def identity(index_type, value_type):
        return tirx.const(-1, index_type), tirx.min_value(value_type)

    # Two stages, so the first runs one thread per chunk instead of one thread over the vocabulary.
    reducer = te.comm_reducer(combine, identity, name="argmax")
    size = int(s.shape[0])
    chunk = 256
    chunks = (size + chunk - 1) // chunk
    k = te.reduce_axis((0, chunk), name="k")
    index = lambda c, k: tirx.min(c * chunk + k, size - 1)  # noqa: E731 - the tail re-reads the last
    part_index, part_value = te.compute((chunks,), lambda c: reducer(
        (tirx.Cast("int32", index(c, k)), s[index(c, k)]), axis=k), name="argmax_chunks")
    c = te.reduce_axis((0, chunks), name="c")
    return list(te.compute((1,), lambda _: reducer((part_index[c], part_value[c]), axis=c), name="argmax"))
