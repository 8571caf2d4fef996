"""The LLaMA family (LLaMA 2/3, Qwen2, Mistral): pre-norm blocks of RMSNorm -> GQA attention ->
RMSNorm -> SiLU-gated MLP, with the shared blocks of blocks.py."""

from __future__ import annotations

from tvm.relax.frontend import nn

from ..config import ConfigReader, ModelConfig
from .blocks import GENERATE_INPUTS, Attention, CausalLM, GatedMLP, rms_norm  # noqa: F401 - re-exported
from .gguf_mapping import GGUFMetadata, gguf_metadata_to_hf

SILU = {"silu": "silu"}


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, linear, prefix: str, index: int):
        self.input_layernorm = rms_norm(cfg)
        self.self_attn = Attention(cfg, linear, f"{prefix}.self_attn")
        self.post_attention_layernorm = rms_norm(cfg)
        self.mlp = GatedMLP(cfg, linear, f"{prefix}.mlp")

    def forward(self, x: nn.Tensor, cos: nn.Tensor, sin: nn.Tensor) -> nn.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))

    def forward_cached(self, x, cos, sin, k_cache, v_cache, offset) -> nn.Tensor:
        x = x + self.self_attn.forward_cached(self.input_layernorm(x), cos, sin, k_cache, v_cache, offset)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaForCausalLM(CausalLM):
    Layer = DecoderLayer


def config_from_hf(raw: ConfigReader) -> ModelConfig:
    qwen2 = raw.arch == "Qwen2ForCausalLM"
    attention_bias = bool(raw.get("attention_bias", False))
    return raw.common(
        family="llama",
        hidden_act=raw.activation("hidden_act", SILU, "silu"),
        qkv_bias=qwen2 or attention_bias,
        o_bias=attention_bias and not qwen2,
        mlp_bias=bool(raw.get("mlp_bias", False)),
    )


def gguf_to_hf(meta: GGUFMetadata) -> dict:
    raw = gguf_metadata_to_hf(meta, {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[meta.arch])
    factors = meta.tensor("rope_freqs.weight")
    if factors is not None:  # Llama 3.1+: llama.cpp stores the llama3 scaling as per-frequency divisors
        raw["rope_scaling"] = {"rope_type": "freq_factors", "factors": [float(f) for f in factors]}
    return raw
