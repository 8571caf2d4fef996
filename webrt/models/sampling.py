"""Token sampling on the device, so a step reads back one token id instead of the whole logits.

    mask_tokens           a grammar's vocabulary bitmask (structured output, web/grammar.js): tokens
                          whose bit is 0 get MASKED_LOGIT, before the penalties and the choice
    penalize              repetition / frequency / presence penalties for the tokens seen so far
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

# params tensor layout: [temperature, repetition_penalty, frequency_penalty, presence_penalty]
SAMPLING_PARAMS = 4

# A forbidden token's logit: far below any real one, yet finite, so the penalties, the division by
# the temperature and the Gumbel noise keep it finite and last on every backend.
MASKED_LOGIT = -1e30


def mask_words(vocab: int) -> int:
    """Length of the token bitmask: one int32 word per 32 tokens (xgrammar's layout)."""
    return (vocab + 31) // 32


def mask_tokens(logits: nn.Tensor, mask: nn.Tensor) -> nn.Tensor:
    """logits [1, 1, vocab]; mask int32 [mask_words(vocab)]: bit v % 32 of word v // 32 is 1 when
    token v is allowed. Without a grammar the shell passes all ones. The shift is arithmetic on
    int32, but the bit is taken with `& 1` after it, so the sign bits shifted in never matter."""

    def apply(x: te.Tensor, m: te.Tensor):
        def value(b, s, v):
            v32 = tirx.Cast("int32", v)
            allowed = (m[v32 // 32] >> (v32 % 32)) & tirx.const(1, "int32")
            return tirx.Select(allowed != tirx.const(0, "int32"), x[b, s, v], tirx.const(MASKED_LOGIT, "float32"))

        return te.compute(x.shape, value, name="masked")

    return op.tensor_expr_op(apply, "mask_tokens", [logits, mask])


def penalize(logits: nn.Tensor, token_ids: nn.Tensor, counts: nn.Tensor, params: nn.Tensor) -> nn.Tensor:
    """logits [1, 1, vocab]; token_ids [m] distinct ids seen so far (prompt and reply); counts [m]
    how often each occurs in the reply. The repetition penalty (Hugging Face's: divide positive
    logits, multiply negative ones) applies to every listed id; the frequency and presence
    penalties (OpenAI's) only to ids the reply holds.

    Written as a gather (each vocabulary entry looks itself up among the m ids), not a scatter, so
    it is one plain kernel on every backend; m is the number of distinct tokens, a few hundred."""

    def listed(ids: te.Tensor, counts: te.Tensor, vocab: int):
        j = te.reduce_axis((0, ids.shape[0]), name="j")
        hits = te.compute((vocab,), lambda v: te.sum(tirx.Select(ids[j] == v, tirx.const(1.0, "float32"),
                                                                  tirx.const(0.0, "float32")), axis=j), name="hits")
        j2 = te.reduce_axis((0, ids.shape[0]), name="j2")
        seen = te.compute((vocab,), lambda v: te.sum(tirx.Select(ids[j2] == v, counts[j2],
                                                                  tirx.const(0.0, "float32")), axis=j2), name="seen")
        return [hits, seen]

    def apply(x: te.Tensor, hits: te.Tensor, seen: te.Tensor, p: te.Tensor):
        def value(b, s, v):
            zero = tirx.const(0.0, "float32")
            repeated = tirx.Select(x[b, s, v] > zero, x[b, s, v] / p[1], x[b, s, v] * p[1])
            penalized = repeated - seen[v] * p[2] - tirx.Select(seen[v] > zero, p[3], zero)
            return tirx.Select(hits[v] > zero, penalized, x[b, s, v])

        return te.compute(x.shape, value, name="penalized")

    hits, seen = op.tensor_expr_op(lambda ids, c: listed(ids, c, int(logits.shape[2])), "penalty_lookup",
                                   [token_ids, counts])
    return op.tensor_expr_op(apply, "penalize", [logits, hits, seen, params])


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
