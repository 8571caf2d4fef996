"""Building blocks the decoder families share, on tvm.relax.frontend.nn: RoPE from host tables,
masks, the embedding gather, KV caches with in-place appends, GQA attention (optionally with q/k
norms, a fused qkv projection and a sliding window), the gated MLP, and the causal-LM wrapper with
its forward / prefill / decode entries.

A family's file builds its decoder layer from these; what differs between architectures is all
that is left there. Module and parameter names mirror Hugging Face's, so checkpoint tensors bind
by name.
"""

from __future__ import annotations

import numpy as np
from tvm import relax as rx
from tvm import te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import op
from tvm.script import tirx as T

from ..config import ModelConfig
from .quantized import QLinear, QuantizedWeight, quantized_embed, quantized_matmul
from .split import RowSplit, concat_logits, split_embed
from .sampling import SAMPLING_PARAMS, add_bias, choose, mask_tokens, mask_words, penalize, top_logprobs

# The inputs of the prefill/decode entries that are not weights or state, in order.
GENERATE_INPUTS = ["input_ids", "offset", "token_mask", "penalty_ids", "penalty_counts", "sampling", "seed",
                   "bias_ids", "bias_values", "logprobs"]


F32 = "float32"


def as_dtype(x: nn.Tensor, dtype: str) -> nn.Tensor:
    """x in dtype: the f16 kernel set casts around the steps that compute in float32."""
    return x if x.dtype == dtype else op.astype(x, dtype)


def apply_rope(x: nn.Tensor, cos: nn.Tensor, sin: nn.Tensor, head_dim: int, offset=0) -> nn.Tensor:
    """Rotate-half RoPE at positions offset..offset+s-1: x*cos + rotate_half(x)*sin, with
    host-computed float32 tables [positions, head_dim], computed in float32 and given in x's dtype."""
    half = head_dim // 2

    def compute(x: te.Tensor, cos: te.Tensor, sin: te.Tensor, offset=0):
        def value(b, s, h, d):
            at = lambda d: x[b, s, h, d].astype(F32)  # noqa: E731
            rotated = tirx.if_then_else(d < half, -at(d + half), at(d - half))
            return (at(d) * cos[offset + s, d] + rotated * sin[offset + s, d]).astype(x.dtype)

        return te.compute(x.shape, value, name="rope")

    # the offset is passed as an argument, so the kernel receives it as a scalar
    args = [x, cos, sin] if isinstance(offset, int) and offset == 0 else [x, cos, sin, offset]
    return op.tensor_expr_op(compute, "rope", args)


def _visible(i, j, window: int | None):
    """Whether the query at position i sees the key at position j: causal, and within the last
    `window` positions when the layer slides (transformers: j > i - window)."""
    causal = j <= i
    return causal if window is None else tirx.all(causal, j + window > i)


def causal_mask(scores: nn.Tensor, window: int | None = None) -> nn.Tensor:
    """Scores [b, heads, q, k] with every key the query may not see set to the lowest float."""

    def compute(s: te.Tensor):
        lowest = tirx.min_value(s.dtype)
        return te.compute(
            s.shape,
            lambda b, h, i, j: tirx.if_then_else(_visible(i, j, window), s[b, h, i, j], lowest),
            name="causal_mask",
        )

    return op.tensor_expr_op(compute, "causal_mask", [scores])


def embed(weight: nn.Tensor, ids: nn.Tensor) -> nn.Tensor:
    """Rows of the embedding table for token ids [b, s] -> [b, s, hidden].

    A plain gather: relax's take legalizes in "fast" mode, which warns on every compile. Callers
    validate ids against the vocabulary before they reach the kernel.
    """

    def compute(w: te.Tensor, ids: te.Tensor):
        return te.compute((*ids.shape, w.shape[1]), lambda b, s, h: w[ids[b, s], h], name="embed")

    return op.tensor_expr_op(compute, "embed", [weight, ids])


def cache_append(cache: nn.Tensor, new: nn.Tensor, offset, ring: bool = False) -> nn.Tensor:
    """Write new [1, n, kv_heads, head_dim] into cache [capacity, kv_heads, head_dim] at row offset
    (a ring: row (offset + s) % capacity), in place: after CallTIRRewrite this is one kernel and no
    allocation."""
    capacity, heads, dim = (int(v) for v in cache.shape)
    dtype = cache.dtype

    @T.prim_func(private=True, s_tir=True)
    def append(var_cache: T.handle, var_new: T.handle, offset: T.int64):
        T.func_attr({"tirx.noalias": True})
        n = T.int64()
        dst = T.match_buffer(var_cache, (capacity, heads, dim), dtype)
        src = T.match_buffer(var_new, (1, n, heads, dim), dtype)
        for s, h, d in T.grid(n, heads, dim):
            with T.sblock("append"):
                vs, vh, vd = T.axis.remap("SSS", [s, h, d])
                dst[offset + vs, vh, vd] = src[0, vs, vh, vd]

    @T.prim_func(private=True, s_tir=True)
    def append_ring(var_cache: T.handle, var_new: T.handle, offset: T.int64):
        T.func_attr({"tirx.noalias": True})
        n = T.int64()
        dst = T.match_buffer(var_cache, (capacity, heads, dim), dtype)
        src = T.match_buffer(var_new, (1, n, heads, dim), dtype)
        for s, h, d in T.grid(n, heads, dim):
            with T.sblock("append"):
                vs, vh, vd = T.axis.remap("SSS", [s, h, d])
                dst[T.floormod(offset + vs, capacity), vh, vd] = src[0, vs, vh, vd]

    return op.tensor_ir_inplace_op(append_ring if ring else append, "cache_append",
                                   [cache, new, rx.ShapeExpr([offset])], 0,
                                   nn.Tensor.placeholder(cache.shape, cache.dtype))


def cached_attention(q: nn.Tensor, k_cache: nn.Tensor, v_cache: nn.Tensor, offset, groups: int,
                     scale: float, window: int | None = None, ring: bool = False) -> nn.Tensor:
    """Attention of q [1, n, heads, hd] (positions offset..offset+n-1) over the caches
    [capacity, kv_heads, hd], causal and within `window`; returns [1, n, heads, hd].

    A plain cache holds position j in row j: the keys are its first offset+n rows. A ring (a
    sliding layer, see ModelConfig.cache_rows) holds in row j the latest position written there,
    last - (last - j) mod capacity with last = offset+n-1; rows not yet written have a negative one.

    Each kernel takes the offset as a scalar argument: TIR functions may only use variables their
    arguments define. Scores, softmax and the weighted sum are float32 whatever the cache's dtype;
    the result has q's dtype."""
    heads, hd = (int(v) for v in q.shape[2:])
    capacity = int(k_cache.shape[0])

    def keys(n, offset):
        return capacity if ring else offset + n

    def position(j, n, offset):
        if not ring:
            return j
        last = offset + n - 1
        return last - tirx.floormod(last - j, capacity)

    # shapes come from the te tensors, whose variables are the kernel's own
    def scores(q: te.Tensor, k: te.Tensor, offset):
        n = q.shape[1]
        d = te.reduce_axis((0, hd), name="d")
        return te.compute((1, heads, n, keys(n, offset)), lambda b, h, i, j: te.sum(
            q[b, i, h, d].astype(F32) * k[j, h // groups, d].astype(F32), axis=d), name="scores")

    def masked(s: te.Tensor, offset):
        n = s.shape[2]
        lowest = tirx.min_value(s.dtype)

        def value(b, h, i, j):
            pos = position(j, n, offset)
            seen = _visible(offset + i, pos, window)
            seen = tirx.all(seen, pos >= 0) if ring else seen
            return tirx.if_then_else(seen, s[b, h, i, j] * tirx.const(scale, s.dtype), lowest)

        return te.compute(s.shape, value, name="masked")

    def weighted(p: te.Tensor, v: te.Tensor, offset):
        n = p.shape[2]
        j = te.reduce_axis((0, keys(n, offset)), name="j")
        total = te.compute((1, n, heads, hd), lambda b, i, h, d: te.sum(
            p[b, h, i, j] * v[j, h // groups, d].astype(F32), axis=j), name="weighted")
        if v.dtype == F32:
            return total
        return te.compute(total.shape, lambda *i: total(*i).astype(v.dtype), name="weighted_cast")

    s = op.tensor_expr_op(scores, "attn_scores", [q, k_cache, offset])
    p = op.softmax(op.tensor_expr_op(masked, "attn_mask", [s, offset]), axis=-1)
    return op.tensor_expr_op(weighted, "attn_values", [p, v_cache, offset])


def last_position(x: nn.Tensor) -> nn.Tensor:
    """x [b, n, h] -> [b, 1, h]: only the last position's logits are needed to generate."""
    return op.tensor_expr_op(lambda t: te.compute((t.shape[0], 1, t.shape[2]),
                                                  lambda b, _, h: t[b, t.shape[1] - 1, h], name="last"),
                             "last_position", [x])


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm computed in float32 for any x (its weight stays float32, shared by both kernel
    sets of a q4f16 artifact), the result in x's dtype."""

    def forward(self, x: nn.Tensor) -> nn.Tensor:
        return as_dtype(super().forward(as_dtype(x, F32)), x.dtype)


def rms_norm(cfg: ModelConfig, size: int | None = None) -> nn.RMSNorm:
    """x * rsqrt(mean(x^2) + eps) * w. Gemma's (1 + w) is folded into w when weights load."""
    return RMSNorm(size or cfg.hidden_size, axes=-1, epsilon=cfg.rms_norm_eps, bias=False)


class Attention(nn.Module):
    """Grouped-query attention. q_proj/k_proj/v_proj, or one qkv_proj (Phi-3); q_norm/k_norm over
    each head before RoPE when cfg.qk_norm; keys limited to the last `window` positions on a
    sliding layer."""

    def __init__(self, cfg: ModelConfig, linear, prefix: str, window: int | None = None,
                 fused_qkv: bool = False):
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = cfg.num_key_value_heads
        self.head_dim = hd = cfg.head_dim
        self.scale = cfg.query_scale if cfg.query_scale is not None else hd ** -0.5
        self.window = window
        self.context_window = cfg.context_window
        q_size, kv_size = self.num_heads * hd, self.num_kv_heads * hd
        if fused_qkv:
            self.qkv_proj = linear(f"{prefix}.qkv_proj", cfg.hidden_size, q_size + 2 * kv_size, cfg.qkv_bias)
        else:
            self.q_proj = linear(f"{prefix}.q_proj", cfg.hidden_size, q_size, cfg.qkv_bias)
            self.k_proj = linear(f"{prefix}.k_proj", cfg.hidden_size, kv_size, cfg.qkv_bias)
            self.v_proj = linear(f"{prefix}.v_proj", cfg.hidden_size, kv_size, cfg.qkv_bias)
        self.o_proj = linear(f"{prefix}.o_proj", q_size, cfg.hidden_size, cfg.o_bias)
        if cfg.qk_norm:
            self.q_norm = rms_norm(cfg, hd)
            self.k_norm = rms_norm(cfg, hd)
        self.fused_qkv, self.qk_norm = fused_qkv, cfg.qk_norm

    def _qkv(self, x: nn.Tensor, cos, sin, offset) -> tuple:
        """q [b, s, heads, hd], k and v [b, s, kv_heads, hd], with RoPE applied to q and k."""
        b, s, _ = x.shape
        hd = self.head_dim
        if self.fused_qkv:
            q_size = self.num_heads * hd
            q, k, v = op.split(self.qkv_proj(x), [q_size, q_size + self.num_kv_heads * hd], axis=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = op.reshape(q, (b, s, self.num_heads, hd))
        k = op.reshape(k, (b, s, self.num_kv_heads, hd))
        v = op.reshape(v, (b, s, self.num_kv_heads, hd))
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        return apply_rope(q, cos, sin, hd, offset), apply_rope(k, cos, sin, hd, offset), v

    def forward(self, x: nn.Tensor, cos: nn.Tensor, sin: nn.Tensor) -> nn.Tensor:
        b, s, _ = x.shape
        hd, groups = self.head_dim, self.num_heads // self.num_kv_heads
        q, k, v = self._qkv(x, cos, sin, 0)
        # [b, heads, s, hd]; grouped-query attention repeats each KV head for its query heads
        q = op.permute_dims(q, (0, 2, 1, 3))
        k = op.repeat(op.permute_dims(k, (0, 2, 1, 3)), groups, axis=1)
        v = op.repeat(op.permute_dims(v, (0, 2, 1, 3)), groups, axis=1)
        # scores, softmax and the weighted sum in float32 whatever the activations' dtype
        scores = op.matmul(q, op.permute_dims(k, (0, 1, 3, 2)), out_dtype=F32) * self.scale
        probs = op.softmax(causal_mask(scores, self.window), axis=-1)
        out = as_dtype(op.permute_dims(op.matmul(probs, as_dtype(v, F32)), (0, 2, 1, 3)), x.dtype)
        return self.o_proj(op.reshape(out, (b, s, self.num_heads * hd)))

    def forward_cached(self, x: nn.Tensor, cos, sin, k_cache, v_cache, offset) -> nn.Tensor:
        """Attention for new tokens at positions offset.., appending their K/V to the caches."""
        b, s, _ = x.shape
        q, k, v = self._qkv(x, cos, sin, offset)
        ring = int(k_cache.shape[0]) < self.context_window  # a sliding layer's ring (cfg.cache_rows)
        k_cache = cache_append(k_cache, k, offset, ring)
        v_cache = cache_append(v_cache, v, offset, ring)
        out = cached_attention(q, k_cache, v_cache, offset, self.num_heads // self.num_kv_heads,
                               self.scale, self.window, ring)
        return self.o_proj(op.reshape(out, (b, s, self.num_heads * self.head_dim)))


ACTIVATIONS = {"silu": op.silu, "gelu_tanh": lambda x: op.gelu(x, approximate="tanh")}


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)); gate_proj and up_proj, or one gate_up_proj (Phi-3, gate first)."""

    def __init__(self, cfg: ModelConfig, linear, prefix: str, fused: bool = False):
        hidden, inner = cfg.hidden_size, cfg.intermediate_size
        if fused:
            self.gate_up_proj = linear(f"{prefix}.gate_up_proj", hidden, 2 * inner, cfg.mlp_bias)
        else:
            self.gate_proj = linear(f"{prefix}.gate_proj", hidden, inner, cfg.mlp_bias)
            self.up_proj = linear(f"{prefix}.up_proj", hidden, inner, cfg.mlp_bias)
        self.down_proj = linear(f"{prefix}.down_proj", inner, hidden, cfg.mlp_bias)
        self.fused, self.act = fused, ACTIVATIONS[cfg.hidden_act]

    def forward(self, x: nn.Tensor) -> nn.Tensor:
        if self.fused:
            gate, up = op.split(self.gate_up_proj(x), 2, axis=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(self.act(gate) * up)


class RopeTables(nn.Module):
    """Host-computed cos/sin tables [context_window, head_dim], stored with the weights."""

    def __init__(self, cfg: ModelConfig):
        self.cos = nn.Parameter((cfg.context_window, cfg.head_dim), "float32")
        self.sin = nn.Parameter((cfg.context_window, cfg.head_dim), "float32")


class KVCache(nn.Module):
    """Per-layer key and value caches [rows, kv_heads, head_dim] (rows: ModelConfig.cache_rows). They are entry inputs like the
    weights, but the artifact lists them as state: the shell allocates them zeroed, once, and the
    prefill/decode kernels update them in place."""

    def __init__(self, cfg: ModelConfig):
        shapes = [(cfg.cache_rows(i), cfg.num_key_value_heads, cfg.head_dim) for i in range(cfg.num_hidden_layers)]
        self.k = nn.ModuleList([_State(shape, cfg.activation_dtype) for shape in shapes])
        self.v = nn.ModuleList([_State(shape, cfg.activation_dtype) for shape in shapes])


class _State(nn.Module):
    def __init__(self, shape, dtype: str):
        self.data = nn.Parameter(shape, dtype)


def float_or_quantized(bits: dict[str, int] | None):
    """The layer factory: linear(name, in, out, bias) gives float32 nn.Linear when bits is None,
    else a QLinear of the code width listed for name (4 when not listed)."""

    def linear(name: str, in_features: int, out_features: int, bias: bool):
        if bits is None:
            return nn.Linear(in_features, out_features, bias=bias)
        return QLinear(in_features, out_features, bias, bits.get(f"{name}.weight", 4))

    return linear


class DecoderModel(nn.Module):
    """`model.` of a Hugging Face checkpoint: embed_tokens, layers, norm."""

    def __init__(self, cfg: ModelConfig, layer, embed_bits: int | None):
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size) if embed_bits is None else \
            QuantizedWeight(cfg.vocab_size, cfg.hidden_size, embed_bits)
        self.layers = nn.ModuleList([layer(i) for i in range(cfg.num_hidden_layers)])
        self.norm = rms_norm(cfg)


class CausalLM(nn.Module):
    """A decoder-only LM: embedding, decoder layers, final norm, LM head (tied or not), and the
    forward / prefill / decode entries every family compiles to.

    A family subclasses it and sets `Layer`, a module built as Layer(cfg, linear, prefix, index)
    with forward(x, cos, sin) and forward_cached(x, cos, sin, k_cache, v_cache, offset)."""

    Layer: type

    def __init__(self, cfg: ModelConfig, bits: dict[str, int] | None = None):
        """bits: None for float32 weights, else the code width (4 or 8) of each quantized matrix,
        by its Hugging Face weight name; matrices not listed there are quantized to 4 bits."""
        self.cfg = cfg
        self.quantized = bits is not None
        linear = float_or_quantized(bits)
        self.model = DecoderModel(cfg, lambda i: self.Layer(cfg, linear, f"model.layers.{i}", i),
                                  None if bits is None else bits.get("model.embed_tokens.weight", 4))
        self.kv_cache = KVCache(cfg)
        self.rope = RopeTables(cfg)
        self.rope_local = RopeTables(cfg) if cfg.local_rope_theta is not None else None
        self.lm_head = None if cfg.tie_word_embeddings else linear("lm_head", cfg.hidden_size, cfg.vocab_size, False)

    def host_tables(self) -> dict[str, np.ndarray]:
        """The parameters computed here rather than read from the checkpoint."""
        tables = dict(zip(("rope.cos", "rope.sin"), self.cfg.rope_tables()))
        if self.rope_local is not None:
            tables.update(zip(("rope_local.cos", "rope_local.sin"), self.cfg.local_rope_tables()))
        return tables

    def _tables(self, index: int) -> tuple[nn.Tensor, nn.Tensor]:
        rope = self.rope_local if self.rope_local is not None and self.cfg.is_sliding(index) else self.rope
        return rope.cos, rope.sin

    def forward(self, input_ids: nn.Tensor) -> nn.Tensor:
        """Logits [1, seq_len, vocab] for token ids [1, seq_len] at positions 0..seq_len-1."""
        x = self.embed(input_ids)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, *self._tables(i))
        return self.logits(self.model.norm(x))

    def embed(self, input_ids: nn.Tensor) -> nn.Tensor:
        if isinstance(self.model.embed_tokens, RowSplit):  # over one binding's limit (split.py)
            x = split_embed(self.model.embed_tokens, input_ids)
        elif self.quantized:
            x = quantized_embed(self.model.embed_tokens, input_ids)
        else:
            x = embed(self.model.embed_tokens.weight, input_ids)
        x = x if self.cfg.embed_scale == 1.0 else x * self.cfg.embed_scale
        return as_dtype(x, self.cfg.activation_dtype)

    def logits(self, x: nn.Tensor) -> nn.Tensor:
        """float32 logits whatever the activations' dtype: sampling and the logits read back are f32."""
        return as_dtype(self._logits(x), F32)

    def _logits(self, x: nn.Tensor) -> nn.Tensor:
        # a quantized head's sums are f32: kept so, not rounded to the activations' dtype
        head = lambda layer: layer(x, out_dtype=F32) if isinstance(layer, QLinear) else layer(x)  # noqa: E731
        if isinstance(self.lm_head, RowSplit):  # over one binding's limit: each part's logits, in order
            return concat_logits([head(part) for part in self.lm_head.parts])
        if self.lm_head is not None:
            return head(self.lm_head)
        if isinstance(self.model.embed_tokens, RowSplit):  # tied, in parts: each part's logits, in order
            return concat_logits([self._tied_logits(x, part) for part in self.model.embed_tokens.parts])
        return self._tied_logits(x, self.model.embed_tokens)

    def _tied_logits(self, x: nn.Tensor, table: nn.Module) -> nn.Tensor:
        if self.quantized:  # tied: the embedding table is the LM head
            return quantized_matmul(x, table)
        return op.matmul(x, op.permute_dims(table.weight))

    def prefill(self, input_ids: nn.Tensor, offset: int, token_mask: nn.Tensor, penalty_ids: nn.Tensor,
                penalty_counts: nn.Tensor, sampling: nn.Tensor, seed: int, bias_ids: nn.Tensor,
                bias_values: nn.Tensor, logprobs: int) -> tuple[nn.Tensor, ...]:
        """Tokens [1, n] at positions offset..offset+n-1: their keys and values are appended to the
        caches, and the next token is sampled from the last position's logits (see sampling.py).
        token_mask is a grammar's bitmask of allowed tokens (all ones without one), applied before
        the penalties; the logit bias comes after them. Returns (token [1] int32, processed logits
        [1, 1, vocab], top ids [20] int32, logprobs [21]); the shell reads back the token, the
        logits only when it samples with top-k / top-p itself, and the last two (computed only when
        `logprobs` is 1) for OpenAI's logprobs."""
        x = self.embed(input_ids)
        for i, (layer, k, v) in enumerate(zip(self.model.layers, self.kv_cache.k, self.kv_cache.v)):
            x = layer.forward_cached(x, *self._tables(i), k.data, v.data, offset)
        logits = mask_tokens(self.logits(self.model.norm(last_position(x))), token_mask)
        logits = add_bias(penalize(logits, penalty_ids, penalty_counts, sampling), bias_ids, bias_values)
        token = choose(logits, sampling, seed)
        return (token, logits, *top_logprobs(logits, token, logprobs))

    def decode(self, input_ids: nn.Tensor, offset: int, token_mask: nn.Tensor, penalty_ids: nn.Tensor,
               penalty_counts: nn.Tensor, sampling: nn.Tensor, seed: int, bias_ids: nn.Tensor,
               bias_values: nn.Tensor, logprobs: int) -> tuple[nn.Tensor, ...]:
        """prefill for exactly one token: a static shape, so GEMV schedules apply."""
        return self.prefill(input_ids, offset, token_mask, penalty_ids, penalty_counts, sampling, seed,
                            bias_ids, bias_values, logprobs)

    def get_default_spec(self) -> nn.spec.ModuleSpec:
        mode = {"param_mode": "plain", "effect_mode": "none"}
        sampling = {"token_mask": nn.spec.Tensor([mask_words(self.cfg.vocab_size)], "int32"),
                    "penalty_ids": nn.spec.Tensor(["num_penalized"], "int32"),
                    "penalty_counts": nn.spec.Tensor(["num_penalized"], "float32"),
                    "sampling": nn.spec.Tensor([SAMPLING_PARAMS], "float32"), "seed": nn.spec.Int(),
                    "bias_ids": nn.spec.Tensor(["num_biased"], "int32"),
                    "bias_values": nn.spec.Tensor(["num_biased"], "float32"), "logprobs": nn.spec.Int()}
        spec = {
            "forward": {"input_ids": nn.spec.Tensor([1, "seq_len"], "int32"), "$": mode},
            "prefill": {"input_ids": nn.spec.Tensor([1, "seq_len"], "int32"), "offset": nn.spec.Int(),
                        **sampling, "$": mode},
            "decode": {"input_ids": nn.spec.Tensor([1, 1], "int32"), "offset": nn.spec.Int(), **sampling, "$": mode},
        }
        return nn.spec.ModuleSpec.from_raw(spec, self)
