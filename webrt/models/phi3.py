"""Phi-3 / Phi-3.5: the LLaMA block with one fused qkv_proj and one fused gate_up_proj (gate rows
first), LongRoPE ("su") scaling for the long-context variants (see config.rope_tables), and a
sliding window on every layer when the config sets one."""

from __future__ import annotations

from ..config import RING_PREFILL_CHUNK, ConfigReader, ModelConfig
from .blocks import Attention, CausalLM, GatedMLP, rms_norm
from .gguf_mapping import GGUF_LAYER_NAMES, GGUFMetadata, gguf_metadata_to_hf
from .llama import SILU, DecoderLayer

GGUF_LAYER_NAMES = {**GGUF_LAYER_NAMES, "attn_qkv": "self_attn.qkv_proj", "ffn_up": "mlp.gate_up_proj"}


class Phi3DecoderLayer(DecoderLayer):
    """LLaMA's block and forward pass, with fused projections and the window."""

    def __init__(self, cfg: ModelConfig, linear, prefix: str, index: int):
        self.input_layernorm = rms_norm(cfg)
        window = cfg.sliding_window if cfg.is_sliding(index) else None
        self.self_attn = Attention(cfg, linear, f"{prefix}.self_attn", window, fused_qkv=True)
        self.post_attention_layernorm = rms_norm(cfg)
        self.mlp = GatedMLP(cfg, linear, f"{prefix}.mlp", fused=True)


class Phi3ForCausalLM(CausalLM):
    Layer = Phi3DecoderLayer


def config_from_hf(raw: ConfigReader) -> ModelConfig:
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    partial = float(rope.get("partial_rotary_factor", raw.get("partial_rotary_factor", 1.0)))
    if partial != 1.0:
        raw.refuse(f"partial_rotary_factor {partial}", "1.0")
    window = raw.get("sliding_window")  # Phi-3-mini-4k: 2047, on every layer
    return raw.common(family="phi3", hidden_act=raw.activation("hidden_act", SILU, "silu"),
                      sliding_window=None if window is None else int(window),
                      layer_types=[] if window is None else ["sliding_attention"] * raw.need("num_hidden_layers"),
                      max_prefill_chunk=None if window is None else RING_PREFILL_CHUNK)


def gguf_to_hf(meta: GGUFMetadata) -> dict:
    raw = gguf_metadata_to_hf(meta, "Phi3ForCausalLM")
    long, short = meta.tensor("rope_factors_long.weight"), meta.tensor("rope_factors_short.weight")
    if long is not None and short is not None:
        raw["rope_scaling"] = {
            "rope_type": "longrope", "long_factor": [float(f) for f in long],
            "short_factor": [float(f) for f in short],
            "original_max_position_embeddings": meta.get("rope.scaling.original_context_length"),
            "attention_factor": meta.get("rope.scaling.attn_factor"),
        }
    return raw
