"""Gemma 3 (text): four RMSNorms per block (before and after attention and the MLP), q/k RMSNorm
before RoPE, a GELU-tanh gated MLP, embeddings scaled by sqrt(hidden) and tied to the LM head.
Local layers attend to a sliding window of keys with RoPE base 10,000; every sixth layer is global,
with the model's own base (and scaling).

Hugging Face stores each norm weight as w for x * (1 + w); the GGUF converter has already folded
the 1 in, so the model computes x * w and Hugging Face weights get their 1 added as they load.
"""

from __future__ import annotations

import numpy as np
from tvm.relax.frontend import nn

from ..config import RING_PREFILL_CHUNK, ConfigReader, ModelConfig
from .blocks import Attention, CausalLM, GatedMLP, rms_norm
from .gguf_mapping import GGUF_LAYER_NAMES, GGUFMetadata, gguf_metadata_to_hf

GELU_TANH = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_tanh": "gelu_tanh"}
LOCAL_ROPE_THETA = 10000.0  # llama.cpp and transformers' default for the sliding layers
SLIDING_PATTERN = 6         # five local layers, then one global

GGUF_LAYER_NAMES = {
    **GGUF_LAYER_NAMES, "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
    "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
}


class Gemma3DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, linear, prefix: str, index: int):
        window = cfg.sliding_window if cfg.is_sliding(index) else None
        self.input_layernorm = rms_norm(cfg)
        self.self_attn = Attention(cfg, linear, f"{prefix}.self_attn", window)
        self.post_attention_layernorm = rms_norm(cfg)
        self.pre_feedforward_layernorm = rms_norm(cfg)
        self.mlp = GatedMLP(cfg, linear, f"{prefix}.mlp")
        self.post_feedforward_layernorm = rms_norm(cfg)

    def forward(self, x: nn.Tensor, cos: nn.Tensor, sin: nn.Tensor) -> nn.Tensor:
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), cos, sin))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))

    def forward_cached(self, x, cos, sin, k_cache, v_cache, offset) -> nn.Tensor:
        attn = self.self_attn.forward_cached(self.input_layernorm(x), cos, sin, k_cache, v_cache, offset)
        x = x + self.post_attention_layernorm(attn)
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class Gemma3ForCausalLM(CausalLM):
    Layer = Gemma3DecoderLayer


def config_from_hf(raw: ConfigReader) -> ModelConfig:
    for key in ("final_logit_softcapping", "attn_logit_softcapping"):
        if raw.get(key) is not None:
            raw.refuse(f"{key} {raw.get(key)}", "null (Gemma 3 has no softcap)")
    if raw.get("use_bidirectional_attention"):
        raw.refuse("use_bidirectional_attention true", "false")
    layers = raw.need("num_hidden_layers")
    pattern = int(raw.get("sliding_window_pattern") or raw.get("_sliding_window_pattern") or SLIDING_PATTERN)
    layer_types = raw.get("layer_types") or [
        "full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(layers)]
    params = raw.get("rope_parameters") or {}
    if "full_attention" in params:  # transformers 5: one RoPE per layer type
        rope_theta, rope_scaling = raw.rope(params["full_attention"])
        local_theta, local_scaling = raw.rope(params.get("sliding_attention", {"rope_theta": LOCAL_ROPE_THETA}))
        if local_scaling.get("rope_type") != "default":
            raw.refuse(f"sliding-layer rope type {local_scaling['rope_type']!r}", "default")
    else:
        rope_theta, rope_scaling = raw.rope()
        local_theta = float(raw.get("rope_local_base_freq", LOCAL_ROPE_THETA))
    hidden = raw.need("hidden_size")
    return raw.common(
        family="gemma3",
        hidden_act=raw.activation("hidden_activation", GELU_TANH, raw.get("hidden_act") or "gelu_pytorch_tanh"),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", True)),
        qkv_bias=bool(raw.get("attention_bias", False)),
        o_bias=bool(raw.get("attention_bias", False)),
        qk_norm=True,
        query_scale=float(raw.get("query_pre_attn_scalar") or raw.get("head_dim") or 256) ** -0.5,
        embed_scale=float(hidden) ** 0.5,
        sliding_window=raw.need("sliding_window"),
        layer_types=list(layer_types),
        rope_theta=rope_theta,
        rope_scaling=rope_scaling,
        local_rope_theta=local_theta,
        max_prefill_chunk=RING_PREFILL_CHUNK,
    )


def hf_weight(name: str, array: np.ndarray) -> np.ndarray:
    """Hugging Face's Gemma norms compute x * (1 + w): fold the 1 in, as the GGUF converter does."""
    return array + np.float32(1.0) if name.endswith("norm.weight") else array


def gguf_to_hf(meta: GGUFMetadata) -> dict:
    raw = gguf_metadata_to_hf(meta, "Gemma3ForCausalLM")
    # llama.cpp: the query scale is 1/sqrt(head_dim), except for the 27B (62 layers): 1/sqrt(hidden/heads)
    scalar = raw["head_dim"] if raw["num_hidden_layers"] != 62 else raw["hidden_size"] // raw["num_attention_heads"]
    raw.update(sliding_window=meta.get("attention.sliding_window"), query_pre_attn_scalar=scalar,
               rope_local_base_freq=LOCAL_ROPE_THETA, hidden_activation="gelu_pytorch_tanh")
    return raw
