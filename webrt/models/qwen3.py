"""Qwen 3 (dense): the LLaMA block with an RMSNorm over each query and key head before RoPE, no
qkv bias, and a head_dim of its own (128, whatever hidden / heads is)."""

from __future__ import annotations

from ..config import ConfigReader, ModelConfig
from .blocks import CausalLM
from .gguf_mapping import GGUF_LAYER_NAMES, GGUFMetadata, gguf_metadata_to_hf
from .llama import SILU, DecoderLayer

GGUF_LAYER_NAMES = {**GGUF_LAYER_NAMES, "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}


class Qwen3ForCausalLM(CausalLM):
    Layer = DecoderLayer  # the LLaMA layer: its Attention adds q_norm / k_norm from cfg.qk_norm


def config_from_hf(raw: ConfigReader) -> ModelConfig:
    if raw.get("use_sliding_window"):
        raw.refuse("use_sliding_window true", "false (every layer attends to the whole context)")
    attention_bias = bool(raw.get("attention_bias", False))
    return raw.common(family="qwen3", hidden_act=raw.activation("hidden_act", SILU, "silu"), qk_norm=True,
                      qkv_bias=attention_bias, o_bias=attention_bias)


def gguf_to_hf(meta: GGUFMetadata) -> dict:
    return gguf_metadata_to_hf(meta, "Qwen3ForCausalLM")
