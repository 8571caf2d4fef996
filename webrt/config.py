"""The model configuration webrt compiles from, read and checked from a Hugging Face config.json."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import WebrtError

# Architectures webrt can compile, and the config keys that differ between them.
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM")
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


@dataclass
class ModelConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    context_window: int
    tie_word_embeddings: bool
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    rope_theta: float = 10000.0
    rope_scaling: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return dict(self.__dict__)

    def rope_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """cos and sin tables [context_window, head_dim], computed on the host in float64.

        WGSL sin/cos on SwiftShader are off by up to 2e-4 at large angles, so the kernels only read tables.
        """
        dim = self.head_dim
        inv_freq = 1.0 / (self.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
        positions = np.arange(self.context_window, dtype=np.float64)
        kind = self.rope_scaling.get("rope_type", "default")
        if kind == "linear":
            positions = positions / float(self.rope_scaling["factor"])
        elif kind == "llama3":
            inv_freq = _llama3_inv_freq(inv_freq, self.rope_scaling)
        angles = np.outer(positions, inv_freq)
        angles = np.concatenate([angles, angles], axis=1)  # HF rotates halves: the table repeats
        return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _llama3_inv_freq(inv_freq: np.ndarray, scaling: dict) -> np.ndarray:
    factor = float(scaling["factor"])
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old_context = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_context / high) & (wavelen <= old_context / low)
    return np.where(medium, smoothed, scaled)


def read_hf_config(model_dir: Path) -> ModelConfig:
    """Read config.json from a Hugging Face model folder and check that webrt supports it."""
    path = model_dir / "config.json"
    if not path.is_file():
        raise WebrtError(f"{model_dir} has no config.json: expected a Hugging Face model folder "
                         "(config.json plus *.safetensors)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WebrtError(f"{path} is not valid JSON ({err}); expected a Hugging Face config.json") from None
    if not isinstance(raw, dict):
        raise WebrtError(f"{path} holds a JSON {type(raw).__name__}; expected an object")
    return config_from_dict(raw, str(path))


def config_from_dict(raw: dict, where: str) -> ModelConfig:
    archs = raw.get("architectures") or []
    arch = archs[0] if archs else raw.get("model_type", "<none>")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise WebrtError(f"{where}: architecture {arch!r} is not supported; "
                         f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")

    def need(key, kind=int):
        if key not in raw:
            raise WebrtError(f"{where}: missing key {key!r}, which {arch} needs")
        try:
            return kind(raw[key])
        except (TypeError, ValueError):
            raise WebrtError(f"{where}: {key!r} is {raw[key]!r}; expected a {kind.__name__}") from None

    if raw.get("hidden_act", "silu") != "silu":
        raise WebrtError(f"{where}: hidden_act {raw['hidden_act']!r} is not supported; supported: silu")
    heads = need("num_attention_heads")
    hidden = need("hidden_size")
    kv_heads = int(raw.get("num_key_value_heads") or heads)
    head_dim = int(raw.get("head_dim") or hidden // heads)
    if heads % kv_heads:
        raise WebrtError(f"{where}: num_attention_heads {heads} is not a multiple of "
                         f"num_key_value_heads {kv_heads}")
    # transformers 5 writes rope_parameters (with rope_theta inside); older versions write
    # rope_theta and rope_scaling at the top level.
    rope = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise WebrtError(f"{where}: rope type {rope_type!r} is not supported; "
                         f"supported: {', '.join(SUPPORTED_ROPE_TYPES)}")
    rope["rope_type"] = rope_type
    rope_theta = float(rope.pop("rope_theta", raw.get("rope_theta", 10000.0)))
    qwen2 = arch == "Qwen2ForCausalLM"
    return ModelConfig(
        architecture=arch,
        vocab_size=need("vocab_size"),
        hidden_size=hidden,
        intermediate_size=need("intermediate_size"),
        num_hidden_layers=need("num_hidden_layers"),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        rms_norm_eps=need("rms_norm_eps", float),
        context_window=need("max_position_embeddings"),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        qkv_bias=qwen2 or bool(raw.get("attention_bias", False)),
        o_bias=bool(raw.get("attention_bias", False)) and not qwen2,
        mlp_bias=bool(raw.get("mlp_bias", False)),
        rope_theta=rope_theta,
        rope_scaling=rope,
    )
