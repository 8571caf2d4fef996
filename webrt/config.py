"""The model configuration webrt compiles from, read and checked from a Hugging Face config.json.

Which architectures exist, and how each one's config.json maps onto ModelConfig, is the registry's
job (webrt/models/registry.py); this module holds the fields they share and the host RoPE math.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config_checks import HF_KEYS, check_config, check_hf_config
from .errors import WebrtError

# "freq_factors" is llama.cpp's form of llama3 scaling in a GGUF: inv_freq divided per frequency
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3", "longrope", "freq_factors")
# The most tokens one prefill call takes on a model whose sliding layers keep a ring (the shell's
# default prefill chunk): see ModelConfig.cache_rows
RING_PREFILL_CHUNK = 128


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
    family: str = "llama"            # the registry's name for the model code (webrt/models/registry.py)
    hidden_act: str = "silu"         # the gated MLP's activation: silu or gelu_tanh
    qk_norm: bool = False            # RMSNorm over each q/k head before RoPE (Qwen 3, Gemma 3)
    query_scale: float | None = None  # attention's score scale; None: 1/sqrt(head_dim)
    embed_scale: float = 1.0         # the embedding rows are multiplied by this (Gemma: sqrt(hidden))
    sliding_window: int | None = None  # the key window of "sliding_attention" layers
    layer_types: list = field(default_factory=list)  # per layer "full_attention" / "sliding_attention"
    local_rope_theta: float | None = None  # RoPE base of the sliding layers (Gemma 3), default scaling
    # Sliding layers keep a ring of sliding_window + max_prefill_chunk - 1 rows when this is set: the
    # shell then prefills at most this many tokens per call (see cache_rows)
    max_prefill_chunk: int | None = None
    # the dtype of activations and the KV cache: "float16" for a q4f16 artifact's f16 kernel set
    # (weights stay as they are; matmuls, softmax, norms and RoPE accumulate in float32)
    activation_dtype: str = "float32"

    def to_json(self) -> dict:
        return dict(self.__dict__)

    def is_sliding(self, layer: int) -> bool:
        return bool(self.layer_types) and self.layer_types[layer] == "sliding_attention"

    def cache_rows(self, layer: int) -> int:
        """KV cache rows of a layer: the context window, or a ring on a sliding layer. A prefill of
        n tokens writes n rows before its first query reads the window - 1 rows before it, so the
        ring holds window + n - 1 rows for the longest n the shell sends."""
        if not self.is_sliding(layer) or self.max_prefill_chunk is None:
            return self.context_window
        return min(self.context_window, self.sliding_window + self.max_prefill_chunk - 1)

    def rope_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """cos and sin tables [context_window, head_dim] of the (global) layers' RoPE."""
        return rope_tables(self.rope_theta, self.rope_scaling, self.head_dim, self.context_window)

    def local_rope_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """The sliding layers' tables, when they have their own base (Gemma 3)."""
        return rope_tables(self.local_rope_theta, {}, self.head_dim, self.context_window)


def rope_tables(theta: float, scaling: dict, dim: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin tables [length, dim], computed on the host in float64.

    WGSL sin/cos on SwiftShader are off by up to 2e-4 at large angles, so the kernels only read tables.
    """
    inv_freq = 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    positions = np.arange(length, dtype=np.float64)
    kind = scaling.get("rope_type", "default")
    attention_factor = 1.0
    if kind == "linear":
        positions = positions / float(scaling["factor"])
    elif kind == "llama3":
        inv_freq = _llama3_inv_freq(inv_freq, scaling)
    elif kind == "freq_factors":
        inv_freq = inv_freq / np.asarray(scaling["factors"], dtype=np.float64)
    elif kind == "longrope":
        inv_freq, attention_factor = _longrope_inv_freq(inv_freq, scaling, length)
    angles = np.outer(positions, inv_freq)
    angles = np.concatenate([angles, angles], axis=1)  # HF rotates halves: the table repeats
    return ((np.cos(angles) * attention_factor).astype(np.float32),
            (np.sin(angles) * attention_factor).astype(np.float32))


def _longrope_inv_freq(inv_freq: np.ndarray, scaling: dict, length: int) -> tuple[np.ndarray, float]:
    """Phi-3's LongRoPE: per-frequency divisors, the long set when the compiled context is past the
    pretraining length (a table cannot switch at run time, as transformers does per sequence), and
    cos/sin scaled by sqrt(1 + ln(factor) / ln(original length))."""
    original = float(scaling["original_max_position_embeddings"])
    factors = scaling["long_factor"] if length > original else scaling["short_factor"]
    factor = float(scaling.get("factor") or scaling.get("max_position_embeddings", original) / original)
    attention = scaling.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    return inv_freq / np.asarray(factors, dtype=np.float64), float(attention)


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
    return config_from_dict(read_config_json(model_dir), str(model_dir / "config.json"))


def read_config_json(model_dir: Path) -> dict:
    """The JSON object in a Hugging Face model folder's config.json, refusing a missing or malformed one."""
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
    return raw


def config_from_dict(raw: dict, where: str, names: dict[str, str] | None = None) -> ModelConfig:
    """The registry's family for raw["architectures"] maps the rest of the dict. names: webrt
    field -> the source's name for it in error messages (config_checks.gguf_names for GGUF files)."""
    from .models.registry import family_for_hf

    archs = raw.get("architectures") or []
    arch = archs[0] if archs else raw.get("model_type", "<none>")
    family = family_for_hf(arch, where)
    check_hf_config(raw, where, names)  # the shared keys' types and ranges, before any arithmetic on them
    cfg = family.config_from_hf(ConfigReader(raw, where, arch))
    validate(cfg, where, names)
    return cfg


def validate(cfg: ModelConfig, where: str, names: dict[str, str] | None = None) -> None:
    """Checks on the mapped config that hold for every family (webrt/config_checks.py)."""
    check_config(cfg, where, names=names or HF_KEYS)


class ConfigReader:
    """A config.json dict with typed look-ups whose errors name the file, the key and the family."""

    def __init__(self, raw: dict, where: str, arch: str):
        self.raw, self.where, self.arch = raw, where, arch

    def need(self, key: str, kind=int):
        if key not in self.raw:
            raise WebrtError(f"{self.where}: missing key {key!r}, which {self.arch} needs")
        try:
            return kind(self.raw[key])
        except (TypeError, ValueError):
            raise WebrtError(f"{self.where}: {key!r} is {self.raw[key]!r}; expected a {kind.__name__}") from None

    def get(self, key: str, default=None):
        return self.raw.get(key, default)

    def refuse(self, what: str, supported: str):
        raise WebrtError(f"{self.where}: {what} is not supported for {self.arch}; supported: {supported}")

    def activation(self, key: str, supported: dict[str, str], default: str) -> str:
        """The config's activation name, as webrt's name for it."""
        name = self.raw.get(key) or default
        if name not in supported:
            self.refuse(f"{key} {name!r}", ", ".join(supported))
        return supported[name]

    def rope(self, params: dict | None = None) -> tuple[float, dict]:
        """(rope_theta, scaling) from transformers 5's rope_parameters (rope_theta inside) or older
        versions' top-level rope_theta and rope_scaling."""
        rope = dict(params if params is not None else
                    (self.raw.get("rope_parameters") or self.raw.get("rope_scaling") or {}))
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        rope_type = "longrope" if rope_type == "su" else rope_type  # Phi-3's first name for it
        if rope_type not in SUPPORTED_ROPE_TYPES:
            self.refuse(f"rope type {rope_type!r}", ", ".join(SUPPORTED_ROPE_TYPES))
        rope["rope_type"] = rope_type
        rope.pop("type", None)
        if rope_type == "longrope":
            rope.setdefault("original_max_position_embeddings",
                            self.raw.get("original_max_position_embeddings") or self.need("max_position_embeddings"))
            rope.setdefault("max_position_embeddings", self.need("max_position_embeddings"))
        return float(rope.pop("rope_theta", self.raw.get("rope_theta", 10000.0))), rope

    def common(self, **overrides) -> ModelConfig:
        """The fields every decoder family shares, read with HF's names."""
        heads = self.need("num_attention_heads")
        hidden = self.need("hidden_size")
        rope_theta, rope_scaling = self.rope()
        fields = dict(
            architecture=self.arch,
            vocab_size=self.need("vocab_size"),
            hidden_size=hidden,
            intermediate_size=self.need("intermediate_size"),
            num_hidden_layers=self.need("num_hidden_layers"),
            num_attention_heads=heads,
            num_key_value_heads=int(self.raw.get("num_key_value_heads") or heads),
            head_dim=int(self.raw.get("head_dim") or hidden // heads),
            rms_norm_eps=self.need("rms_norm_eps", float),
            context_window=self.need("max_position_embeddings"),
            tie_word_embeddings=bool(self.raw.get("tie_word_embeddings", False)),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
        )
        fields.update(overrides)
        return ModelConfig(**fields)
