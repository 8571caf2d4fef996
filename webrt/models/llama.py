"""The LLaMA family (LLaMA, Qwen2, Mistral) on tvm.relax.frontend.nn.

Module and parameter names mirror Hugging Face's, so checkpoint tensors bind by name.
The forward reads top to bottom: embed, then per layer RMSNorm -> attention -> RMSNorm -> MLP, then
the final norm and the LM head. The sequence length is symbolic ("seq_len").
"""

from __future__ import annotations

from tvm import te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import op

from ..config import ModelConfig


def apply_rope(x: nn.Tensor, cos: nn.Tensor, sin: nn.Tensor, head_dim: int) -> nn.Tensor:
    """Rotate-half RoPE: x*cos + rotate_half(x)*sin, with host-computed tables [positions, head_dim]."""
    half = head_dim // 2

    def compute(x: te.Tensor, cos: te.Tensor, sin: te.Tensor):
        def value(b, s, h, d):
            rotated = tirx.if_then_else(d < half, -x[b, s, h, d + half], x[b, s, h, d - half])
            return x[b, s, h, d] * cos[s, d] + rotated * sin[s, d]

        return te.compute(x.shape, value, name="rope")

    return op.tensor_expr_op(compute, "rope", [x, cos, sin])


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


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.num_heads * self.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, cfg.hidden_size, bias=cfg.o_bias)

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


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.mlp_bias)

    def forward(self, x: nn.Tensor) -> nn.Tensor:
        return self.down_proj(op.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        self.input_layernorm = nn.RMSNorm(cfg.hidden_size, axes=-1, epsilon=cfg.rms_norm_eps, bias=False)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = nn.RMSNorm(cfg.hidden_size, axes=-1, epsilon=cfg.rms_norm_eps,
                                                   bias=False)
        self.mlp = MLP(cfg)

    def forward(self, x: nn.Tensor, cos: nn.Tensor, sin: nn.Tensor) -> nn.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class RopeTables(nn.Module):
    """Host-computed cos/sin tables, stored with the weights (see ModelConfig.rope_tables)."""

    def __init__(self, cfg: ModelConfig):
        self.cos = nn.Parameter((cfg.context_window, cfg.head_dim), "float32")
        self.sin = nn.Parameter((cfg.context_window, cfg.head_dim), "float32")


class LlamaModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = nn.RMSNorm(cfg.hidden_size, axes=-1, epsilon=cfg.rms_norm_eps, bias=False)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.model = LlamaModel(cfg)
        self.rope = RopeTables(cfg)
        self.lm_head = None if cfg.tie_word_embeddings else nn.Linear(cfg.hidden_size, cfg.vocab_size,
                                                                       bias=False)

    def forward(self, input_ids: nn.Tensor) -> nn.Tensor:
        """Logits [1, seq_len, vocab] for token ids [1, seq_len] at positions 0..seq_len-1."""
        x = embed(self.model.embed_tokens.weight, input_ids)
        for layer in self.model.layers:
            x = layer(x, self.rope.cos, self.rope.sin)
        x = self.model.norm(x)
        if self.lm_head is None:
            return op.matmul(x, op.permute_dims(self.model.embed_tokens.weight))
        return self.lm_head(x)

    def get_default_spec(self) -> nn.spec.ModuleSpec:
        spec = {
            "forward": {
                "input_ids": nn.spec.Tensor([1, "seq_len"], "int32"),
                "$": {"param_mode": "plain", "effect_mode": "none"},
            }
        }
        return nn.spec.ModuleSpec.from_raw(spec, self)
