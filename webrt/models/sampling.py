"""Token sampling on the device, so a step reads back one token id instead of the whole logits.

    mask_tokens           a grammar's vocabulary bitmask (structured output, web/grammar.js): tokens
                          whose bit is 0 get MASKED_LOGIT, before the penalties and the choice
    penalize              repetition / frequency / presence penalties for the tokens seen so far
    add_bias              OpenAI's logit_bias: a bias added to the listed tokens' logits
    choose                greedy argmax when temperature is 0, else the Gumbel-max trick:
                          argmax(logits / T + g) with g = -log(-log(u)) samples softmax(logits / T)
                          exactly; u comes from a counter-based hash of (seed, token id), so a
                          seed reproduces the same tokens.

    top_logprobs          OpenAI's logprobs: the chosen token's log-probability and the TOP_LOGPROBS
                          most likely tokens with theirs, under log_softmax of the processed logits
                          (at temperature 1), so a step reads back 41 numbers instead of the vocabulary

Top-k and top-p need the sorted distribution; the shell reads the (penalized) logits back for them.
"""

from __future__ import annotations

from tvm import relax as rx
from tvm import te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import op
from tvm.script import tirx as T

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


def lookup_sum(ids: te.Tensor, vocab: int, value, name: str) -> te.Tensor:
    """[vocab]: for each token v, the sum of value(j) over the j with ids[j] == v (0 if none).

    The reduction runs over one position more than there are ids, the last adding 0 without a
    load. TVM lowers a reduction's init into its first iteration (`if j == 0: out[v] = 0`), so
    over zero ids (no logit_bias, no penalized tokens: the usual case) the output was never
    written and kept what the memory held before: on wasm, whose planner reuses storage, the
    logits came out wrong."""
    n = ids.shape[0]
    j = te.reduce_axis((0, n + 1), name="j")
    zero = tirx.const(0.0, "float32")
    return te.compute((vocab,), lambda v: te.sum(
        tirx.if_then_else(j < n, tirx.Select(ids[j] == v, value(j), zero), zero), axis=j), name=name)


def penalize(logits: nn.Tensor, token_ids: nn.Tensor, counts: nn.Tensor, params: nn.Tensor) -> nn.Tensor:
    """logits [1, 1, vocab]; token_ids [m] distinct ids seen so far (prompt and reply); counts [m]
    how often each occurs in the reply. The repetition penalty (Hugging Face's: divide positive
    logits, multiply negative ones) applies to every listed id; the frequency and presence
    penalties (OpenAI's) only to ids the reply holds.

    Written as a gather (each vocabulary entry looks itself up among the m ids), not a scatter, so
    it is one plain kernel on every backend; m is the number of distinct tokens, a few hundred."""

    def listed(ids: te.Tensor, counts: te.Tensor, vocab: int):
        hits = lookup_sum(ids, vocab, lambda j: tirx.const(1.0, "float32"), "hits")
        seen = lookup_sum(ids, vocab, lambda j: counts[j], "seen")
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


def add_bias(logits: nn.Tensor, bias_ids: nn.Tensor, bias_values: nn.Tensor) -> nn.Tensor:
    """logits [1, 1, vocab] plus bias_values[j] at token bias_ids[j] (distinct ids; none: no bias).
    A gather, like the penalties."""

    def lookup(ids: te.Tensor, values: te.Tensor, vocab: int):
        return lookup_sum(ids, vocab, lambda j: values[j], "bias")

    bias = op.tensor_expr_op(lambda ids, values: lookup(ids, values, int(logits.shape[2])), "bias_lookup",
                             [bias_ids, bias_values])
    return op.tensor_expr_op(lambda x, b: te.compute(x.shape, lambda i, s, v: x[i, s, v] + b[v], name="biased"),
                             "add_bias", [logits, bias])


# At most this many alternatives per token (OpenAI's top_logprobs is 0-20).
TOP_LOGPROBS = 20
# Tokens per thread in the first top-k stage.
TOP_CHUNK = 256


@T.macro
def _insert(best, best_id, row, carry, carry_id, value, index, k):
    """Insert (value, index) into best[row, 0:k] (sorted, largest first) when it beats the last
    entry: carried down the list, swapping with each smaller entry (a strict ">", so among equal
    values the earlier one stays first). carry / carry_id [row, 0:2] hold the carried pair."""
    if value > best[row, k - 1]:
        carry[row, 0] = value
        carry_id[row, 0] = index
        for j in range(k):
            if carry[row, 0] > best[row, j]:
                carry[row, 1] = best[row, j]
                carry_id[row, 1] = best_id[row, j]
                best[row, j] = carry[row, 0]
                best_id[row, j] = carry_id[row, 0]
                carry[row, 0] = carry[row, 1]
                carry_id[row, 0] = carry_id[row, 1]


def top_logprobs(logits: nn.Tensor, token: nn.Tensor, enabled) -> tuple[nn.Tensor, nn.Tensor]:
    """For logits [1, 1, vocab] and the chosen token [1]: (ids int32 [TOP_LOGPROBS], logprobs
    float32 [1 + TOP_LOGPROBS]): the most likely ids in order (lowest id first on ties), then the
    chosen token's log-probability followed by theirs. Nothing runs when `enabled` is 0.

    Two stages, as in _argmax_i32: one thread per chunk of TOP_CHUNK tokens keeps the chunk's best
    TOP_LOGPROBS by insertion (most tokens fail the first comparison) and the chunk's sum of
    exp(x - chunk max); one thread merges the chunks' lists and sums into log-sum-exp. Lists and
    carried values live in the functions' outputs, a row per thread, not in local arrays: the CPU
    build takes those from the heap on every call, and doing so corrupted the KV cache's
    neighbourhood once programs were freed and reallocated (seen on wasm, not on WebGPU).
    Each function binds at most 8 storage buffers, WebGPU's default maxStorageBuffersPerShaderStage
    (many phones allow no more): a chunk's sum is its list's last column, and the merged list is
    built in the logprobs output itself, then shifted by one into place."""
    vocab = int(logits.shape[2])
    k = TOP_LOGPROBS
    chunks = (vocab + TOP_CHUNK - 1) // TOP_CHUNK
    lowest = -3.0e38

    @T.prim_func(private=True, s_tir=True)
    def top_chunks(var_x: T.handle, enabled: T.int64, var_ids: T.handle, var_vals: T.handle,
                   var_carry: T.handle, var_carry_id: T.handle):
        T.func_attr({"tirx.noalias": True})
        x = T.match_buffer(var_x, (1, 1, vocab), "float32")
        ids = T.match_buffer(var_ids, (chunks, k), "int32")
        vals = T.match_buffer(var_vals, (chunks, k + 1), "float32")  # [c, k]: the chunk's sum of exp
        carry = T.match_buffer(var_carry, (chunks, 2), "float32")
        carry_id = T.match_buffer(var_carry_id, (chunks, 2), "int32")
        for c in range(chunks):
            with T.sblock("top_chunk"):
                vc = T.axis.spatial(chunks, c)
                T.reads(x[0, 0, 0:vocab])
                T.writes(ids[vc, 0:k], vals[vc, 0:k + 1], carry[vc, 0:2], carry_id[vc, 0:2])
                if enabled > T.int64(0):
                    for j in range(k):
                        vals[vc, j] = T.float32(lowest)
                        ids[vc, j] = -1
                    for i in range(TOP_CHUNK):
                        if vc * TOP_CHUNK + i < vocab:
                            _insert(vals, ids, vc, carry, carry_id, x[0, 0, vc * TOP_CHUNK + i],
                                    T.Cast("int32", vc * TOP_CHUNK + i), k)
                    vals[vc, k] = T.float32(0)
                    for i in range(TOP_CHUNK):
                        if vc * TOP_CHUNK + i < vocab:
                            vals[vc, k] = vals[vc, k] + T.exp(x[0, 0, vc * TOP_CHUNK + i] - vals[vc, 0])

    @T.prim_func(private=True, s_tir=True)
    def top_merge(var_ids: T.handle, var_vals: T.handle, var_x: T.handle, var_token: T.handle,
                  enabled: T.int64, var_top_ids: T.handle, var_logprobs: T.handle,
                  var_carry: T.handle, var_carry_id: T.handle):
        T.func_attr({"tirx.noalias": True})
        ids = T.match_buffer(var_ids, (chunks, k), "int32")
        vals = T.match_buffer(var_vals, (chunks, k + 1), "float32")
        x = T.match_buffer(var_x, (1, 1, vocab), "float32")
        token = T.match_buffer(var_token, (1,), "int32")
        top_ids = T.match_buffer(var_top_ids, (1, k), "int32")
        # while merging: [0, 0:k] the best values so far, [0, k] the log-sum-exp; at the end the
        # chosen token's log-probability, then the best ones'
        logprobs = T.match_buffer(var_logprobs, (1, k + 1), "float32")
        carry = T.match_buffer(var_carry, (1, 2), "float32")
        carry_id = T.match_buffer(var_carry_id, (1, 2), "int32")
        for o in range(1):
            with T.sblock("top_merge"):
                vo = T.axis.spatial(1, o)
                T.reads(ids[0:chunks, 0:k], vals[0:chunks, 0:k + 1], x[0, 0, 0:vocab], token[0])
                T.writes(top_ids[vo, 0:k], logprobs[vo, 0:k + 1], carry[vo, 0:2], carry_id[vo, 0:2])
                if enabled > T.int64(0):
                    for j in range(k):
                        logprobs[vo, j] = T.float32(lowest)
                        top_ids[vo, j] = -1
                    # chunks come in token order and each list is sorted: ties keep the lower id first
                    for c, i in T.grid(chunks, k):
                        _insert(logprobs, top_ids, vo, carry, carry_id, vals[c, i], ids[c, i], k)
                    # log-sum-exp: the chunks' sums rescaled to the overall max
                    logprobs[vo, k] = T.float32(0)
                    for c in range(chunks):
                        logprobs[vo, k] = logprobs[vo, k] + vals[c, k] * T.exp(vals[c, 0] - logprobs[vo, 0])
                    logprobs[vo, k] = logprobs[vo, 0] + T.log(logprobs[vo, k])
                    # shift the list up by one (from its end, in place), then the chosen token first
                    carry[vo, 0] = logprobs[vo, k]
                    for j in range(k):
                        logprobs[vo, k - j] = logprobs[vo, k - 1 - j] - carry[vo, 0]
                    logprobs[vo, 0] = x[0, 0, token[0]] - carry[vo, 0]

    chunk_ids, chunk_vals, _, _ = op.tensor_ir_op(
        top_chunks, "top_logprobs_chunks", [logits, rx.ShapeExpr([enabled])],
        [nn.Tensor.placeholder((chunks, k), "int32"), nn.Tensor.placeholder((chunks, k + 1), "float32"),
         nn.Tensor.placeholder((chunks, 2), "float32"), nn.Tensor.placeholder((chunks, 2), "int32")])
    top_ids, logprobs, _, _ = op.tensor_ir_op(
        top_merge, "top_logprobs", [chunk_ids, chunk_vals, logits, token, rx.ShapeExpr([enabled])],
        [nn.Tensor.placeholder((1, k), "int32"), nn.Tensor.placeholder((1, k + 1), "float32"),
         nn.Tensor.placeholder((1, 2), "float32"), nn.Tensor.placeholder((1, 2), "int32")])
    return op.reshape(top_ids, (k,)), op.reshape(logprobs, (k + 1,))


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
