"""The LLaMA family (LLaMA, Qwen2, Mistral) on tvm.relax.frontend.nn.

Module and parameter names mirror Hugging Face's, so checkpoint tensors bind by name.
The forward reads top to bottom: embed, then per layer RMSNorm -> attention -> RMSNorm -> MLP, then
the final norm and the LM head. The sequence length is symbolic ("seq_len").
"""

from __future__ import annotations

from tvm import relax as rx
from tvm import te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import op
from tvm.script import tirx as T

from ..config import ModelConfig
from .quantized import QLinear, QuantizedWeight, quantized_embed, quantized_matmul
from .sampling import SAMPLING_PARAMS, choose, penalize

# The inputs of the prefill/decode entries that are not weights or state, in order.
GENERATE_INPUTS = ["input_ids", "offset", "penalty_ids", "penalty_counts", "sampling", "seed"]


def apply_rope(x: nn.Tensor, cos: nn.Tensor, sin: nn.Tensor, head_dim: int, offset=0) -> nn.Tensor:
    """Rotate-half RoPE at positions offset..offset+s-1: x*cos + rotate_half(x)*sin, with
    host-computed tables [positions, head_dim]."""
    half = head_dim // 2

    def compute(x: te.Tensor, cos: te.Tensor, sin: te.Tensor, offset=0):
        def value(b, s, h, d):
            rotated = tirx.if_then_else(d < half, -x[b, s, h, d + half], x[b, s, h, d - half])
            return x[b, s, h, d] * cos[offset + s, d] + rotated * sin[offset + s, d]

        return te.compute(x.shape, value, name="rope")

    # the offset is passed as an argument, so the kernel receives it as a scalar
    args = [x, cos, sin] if isinstance(offset, int) and offset == 0 else [x, cos, sin, offset]
    return op.tensor_expr_op(compute, "rope", args)


def causal_mask(scores: nn.Tensor) -> nn.Tensor:
    """Scores [b, heads, q, k] with every key after its query set to the lowest float."""

    def compute(s: te.Tensor):
        lowest = tirx.min_value(s.dtype)
        return te.compute(
            s.shape,
            lambda b, h, i, j: tirx.if_then_else(j <= i, s[b, h, i, j], lowest),
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


def cache_append(cache: nn.Tensor, new: nn.Tensor, offset) -> nn.Tensor:
    """Write new [1, n, kv_heads, head_dim] into cache [capacity, kv_heads, head_dim] at row offset,
    in place: after CallTIRRewrite this is one kernel and no allocation."""
    capacity, heads, dim = (int(v) for v in cache.shape)

    @T.prim_func(private=True, s_tir=True)
    def append(var_cache: T.handle, var_new: T.handle, offset: T.int64):
        T.func_attr({"tirx.noalias": True})
        n = T.int64()
        dst = T.match_buffer(var_cache, (capacity, heads, dim), "float32")
        src = T.match_buffer(var_new, (1, n, heads, dim), "float32")
        for s, h, d in T.grid(n, heads, dim):
            with T.sblock("append"):
                vs, vh, vd = T.axis.remap("SSS", [s, h, d])
                dst[offset + vs, vh, vd] = src[0, vs, vh, vd]

    return op.tensor_ir_inplace_op(append, "cache_append", [cache, new, rx.ShapeExpr([offset])], 0,
                                   nn.Tensor.placeholder(cache.shape, cache.dtype))


def cached_attention(q: nn.Tensor, k_cache: nn.Tensor, v_cache: nn.Tensor, offset, groups: int) -> nn.Tensor:
    """Causal attention of q [1, n, heads, hd] (positions offset..offset+n-1) over the first
    offset+n rows of the caches [capacity, kv_heads, hd]; returns [1, n, heads, hd].

    Each kernel takes the offset as a scalar argument: TIR functions may only use variables their
    arguments define."""
    heads, hd = (int(v) for v in q.shape[2:])
    scale = float(hd) ** -0.5

    # shapes come from the te tensors, whose variables are the kernel's own
    def scores(q: te.Tensor, k: te.Tensor, offset):
        n = q.shape[1]
        d = te.reduce_axis((0, hd), name="d")
        return te.compute((1, heads, n, offset + n), lambda b, h, i, j: te.sum(
            q[b, i, h, d] * k[j, h // groups, d], axis=d), name="scores")

    def masked(s: te.Tensor, offset):
        lowest = tirx.min_value(s.dtype)
        return te.compute(s.shape, lambda b, h, i, j: tirx.if_then_else(
            j <= offset + i, s[b, h, i, j] * tirx.const(scale, s.dtype), lowest), name="masked")

    def weighted(p: te.Tensor, v: te.Tensor, offset):
        n = p.shape[2]
        j = te.reduce_axis((0, offset + n), name="j")
        return te.compute((1, n, heads, hd), lambda b, i, h, d: te.sum(
            p[b, h, i, j] * v[j, h // groups, d], axis=j), name="weighted")

    s = op.tensor_expr_op(scores, "attn_scores", [q, k_cache, offset])
    p = op.softmax(op.tensor_expr_op(masked, "attn_mask", [s, offset]), axis=-1)
    return op.tensor_expr_op(weighted, "attn_values", [p, v_cache, offset])


def last_position(x: nn.Tensor) -> nn.Tensor:
    """x [b, n, h] -> [b, 1, h]: only the last position's logits are needed to generate."""
    return op.tensor_expr_op(lambda t: te.compute((t.shape[0], 1, t.shape[2]),
                                                  lambda b, _, h: t[b, t.shape[1] - 1, h], name="last"),
                             "last_position", [x])


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, linear, prefix: str):
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.q_proj = linear(f"{prefix}.q_proj", cfg.hidden_size, self.num_heads * self.head_dim, cfg.qkv_bias)
        self.k_proj = linear(f"{prefix}.k_proj", cfg.hidden_size, self.num_kv_heads * self.head_dim, cfg.qkv_bias)
        self.v_proj = linear(f"{prefix}.v_proj", cfg.hidden_size, self.num_kv_heads * self.head_dim, cfg.qkv_bias)
        self.o_proj = linear(f"{prefix}.o_proj", self.num_heads * self.head_dim, cfg.hidden_size, cfg.o_bias)

    def forward(self, x: nn.Tensor, cos: nn.Tensor, sin: nn.Tensor) -> nn.Tensor:
        b, s, _ = x.shape
        hd, groups = self.head_dim, self.num_heads // self.num_kv_heads
        q = op.reshape(self.q_proj(x), (b, s, self.num_heads, hd))
        k = op.reshape(self.k_proj(x), (b, s, self.num_kv_heads, hd))
        v = op.reshape(self.v_proj(x), (b, s, self.num_kv_heads, hd))
        q, k = apply_rope(q, cos, sin, hd), apply_rope(k, cos, sin, hd)
        # [b, heads, s, hd]; grouped-query attention repeats each KV head for its query heads
        q = op.permute_dims(q, (0, 2, 1, 3))
        k = op.repeat(op.permute_dims(k, (0, 2, 1, 3)), groups, axis=1)
        v = op.repeat(op.permute_dims(v, (0, 2, 1, 3)), groups, axis=1)
        scores = op.matmul(q, op.permute_dims(k, (0, 1, 3, 2))) * (hd ** -0.5)
        probs = op.softmax(causal_mask(scores), axis=-1)
        out = op.permute_dims(op.matmul(probs, v), (0, 2, 1, 3))
        return self.o_proj(op.reshape(out, (b, s, self.num_heads * hd)))

    def forward_cached(self, x: nn.Tensor, cos, sin, k_cache, v_cache, offset) -> tuple:
        """Attention for new tokens at positions offset.., appending their K/V to the caches."""
        b, s, _ = x.shape
        hd = self.head_dim
        q = op.reshape(self.q_proj(x), (b, s, self.num_heads, hd))
        k = op.reshape(self.k_proj(x), (b, s, self.num_kv_heads, hd))
        v = op.reshape(self.v_proj(x), (b, s, self.num_kv_heads, hd))
        q, k = apply_rope(q, cos, sin, hd, offset), apply_rope(k, cos, sin, hd, offset)
        k_cache = cache_append(k_cache, k, offset)
        v_cache = cache_append(v_cache, v, offset)
        out = cached_attention(q, k_cache, v_cache, offset, self.num_heads // self.num_kv_heads)
        return self.o_proj(op.reshape(out, (b, s, self.num_heads * hd)))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, linear, prefix: str):
        self.gate_proj = linear(f"{prefix}.gate_proj", cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias)
        self.up_proj = linear(f"{prefix}.up_proj", cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias)
        self.down_proj = linear(f"{prefix}.down_proj", cfg.intermediate_size, cfg.hidden_size, cfg.mlp_bias)

    def forward(self, x: nn.Tensor) -> nn.Tensor:
        return self.down_proj(op.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, linear, prefix: str):
        self.input_layernorm = nn.RMSNorm(cfg.hidden_size, axes=-1, epsilon=cfg.rms_norm_eps, bias=False)
        self.self_attn = Attention(cfg, linear, f"{prefix}.self_attn")
        self.post_attention_layernorm = nn.RMSNorm(cfg.hidden_size, axes=-1, epsilon=cfg.rms_norm_eps,
                                                   bias=False)
        self.mlp = MLP(cfg, linear, f"{prefix}.mlp")

    def forward(self, x: nn.Tensor, cos: nn.Tensor, sin: nn.Tensor) -> nn.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))

    def forward_cached(self, x, cos, sin, k_cache, v_cache, offset) -> nn.Tensor:
        x = x + self.self_attn.forward_cached(self.input_layernorm(x), cos, sin, k_cache, v_cache, offset)
        return x + self.mlp(self.post_attention_layernorm(x))


class RopeTables(nn.Module):
    """Host-computed cos/sin tables, stored with the weights (see ModelConfig.rope_tables)."""

    def __init__(self, cfg: ModelConfig):
        self.cos = nn.Parameter((cfg.context_window, cfg.head_dim), "float32")
        self.sin = nn.Parameter((cfg.context_window, cfg.head_dim), "float32")


class KVCache(nn.Module):
    """Per-layer key and value caches [capacity, kv_heads, head_dim]. They are entry inputs like the
    weights, but the artifact lists them as state: the shell allocates them zeroed, once, and the
    prefill/decode kernels update them in place."""

    def __init__(self, cfg: ModelConfig, capacity: int):
        shape = (capacity, cfg.num_key_value_heads, cfg.head_dim)
        self.k = nn.ModuleList([_State(shape) for _ in range(cfg.num_hidden_layers)])
        self.v = nn.ModuleList([_State(shape) for _ in range(cfg.num_hidden_layers)])


class _State(nn.Module):
    def __init__(self, shape):
        self.data = nn.Parameter(shape, "float32")


class LlamaModel(nn.Module):
    def __init__(self, cfg: ModelConfig, linear, embed_bits: int | None):
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size) if embed_bits is None else \
            QuantizedWeight(cfg.vocab_size, cfg.hidden_size, embed_bits)
        self.layers = nn.ModuleList([DecoderLayer(cfg, linear, f"model.layers.{i}")
                                     for i in range(cfg.num_hidden_layers)])
        self.norm = nn.RMSNorm(cfg.hidden_size, axes=-1, epsilon=cfg.rms_norm_eps, bias=False)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg: ModelConfig, bits: dict[str, int] | None = None):
        """bits: None for float32 weights, else the code width (4 or 8) of each quantized matrix,
        by its Hugging Face weight name; matrices not listed there are quantized to 4 bits."""
        self.cfg = cfg
        self.quantized = bits is not None

        def linear(name: str, in_features: int, out_features: int, bias: bool):
            if bits is None:
                return nn.Linear(in_features, out_features, bias=bias)
            return QLinear(in_features, out_features, bias, bits.get(f"{name}.weight", 4))

        self.model = LlamaModel(cfg, linear, None if bits is None else bits.get("model.embed_tokens.weight", 4))
        self.kv_cache = KVCache(cfg, cfg.context_window)
        self.rope = RopeTables(cfg)
        self.lm_head = None if cfg.tie_word_embeddings else linear("lm_head", cfg.hidden_size, cfg.vocab_size, False)

    def forward(self, input_ids: nn.Tensor) -> nn.Tensor:
        """Logits [1, seq_len, vocab] for token ids [1, seq_len] at positions 0..seq_len-1."""
        x = self.embed(input_ids)
        for layer in self.model.layers:
            x = layer(x, self.rope.cos, self.rope.sin)
        return self.logits(self.model.norm(x))

    def embed(self, input_ids: nn.Tensor) -> nn.Tensor:
        if self.quantized:
            return quantized_embed(self.model.embed_tokens, input_ids)
        return embed(self.model.embed_tokens.weight, input_ids)

    def logits(self, x: nn.Tensor) -> nn.Tensor:
        if self.lm_head is not None:
            return self.lm_head(x)
        if self.quantized:  # tied: the embedding table is the LM head
            return quantized_matmul(x, self.model.embed_tokens)
        return op.matmul(x, op.permute_dims(self.model.embed_tokens.weight))

    def prefill(self, input_ids: nn.Tensor, offset: int, penalty_ids: nn.Tensor, penalty_counts: nn.Tensor,
                sampling: nn.Tensor, seed: int) -> tuple[nn.Tensor, nn.Tensor]:
        """Tokens [1, n] at positions offset..offset+n-1: their keys and values are appended to the
        caches, and the next token is sampled from the last position's logits (see sampling.py).
        Returns (token [1] int32, penalized logits [1, 1, vocab]); the shell reads back the token,
        and the logits only when it samples with top-k / top-p itself."""
        x = self.embed(input_ids)
        for layer, k, v in zip(self.model.layers, self.kv_cache.k, self.kv_cache.v):
            x = layer.forward_cached(x, self.rope.cos, self.rope.sin, k.data, v.data, offset)
        logits = penalize(self.logits(self.model.norm(last_position(x))), penalty_ids, penalty_counts, sampling)
        return choose(logits, sampling, seed), logits

    def decode(self, input_ids: nn.Tensor, offset: int, penalty_ids: nn.Tensor, penalty_counts: nn.Tensor,
               sampling: nn.Tensor, seed: int) -> tuple[nn.Tensor, nn.Tensor]:
        """prefill for exactly one token: a static shape, so GEMV schedules apply."""
        return self.prefill(input_ids, offset, penalty_ids, penalty_counts, sampling, seed)

    def get_default_spec(self) -> nn.spec.ModuleSpec:
        mode = {"param_mode": "plain", "effect_mode": "none"}
        sampling = {"penalty_ids": nn.spec.Tensor(["num_penalized"], "int32"),
                    "penalty_counts": nn.spec.Tensor(["num_penalized"], "float32"),
                    "sampling": nn.spec.Tensor([SAMPLING_PARAMS], "float32"), "seed": nn.spec.Int()}
        spec = {
            "forward": {"input_ids": nn.spec.Tensor([1, "seq_len"], "int32"), "$": mode},
            "prefill": {"input_ids": nn.spec.Tensor([1, "seq_len"], "int32"), "offset": nn.spec.Int(),
                        **sampling, "$": mode},
            "decode": {"input_ids": nn.spec.Tensor([1, 1], "int32"), "offset": nn.spec.Int(), **sampling, "$": mode},
        }
        return nn.spec.ModuleSpec.from_raw(spec, self)
