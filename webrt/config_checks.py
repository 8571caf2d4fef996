"""Type and range checks for every model config field webrt reads, in one place.

Each importer (Hugging Face config.json, GGUF metadata) and each model family maps its source onto
webrt's field names, then calls `check_config` before anything is built from the values. A bad value
fails here with one line naming the field (as the source spells it), its value and what is expected,
instead of compiling a model with -1 layers or dividing by zero heads.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from .errors import WebrtError

# Sizes: integers >= 1 wherever a config has them (a family may add its own through `extra_ints`).
POSITIVE_INTS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "head_dim", "context_window", "sliding_window")
POSITIVE_FLOATS = ("rms_norm_eps", "rope_theta", "embed_scale")
OPTIONAL_POSITIVE_FLOATS = ("local_rope_theta", "query_scale")  # None: the family's default
BOOLS = ("tie_word_embeddings", "qkv_bias", "o_bias", "mlp_bias")
# rope type -> the keys of rope_scaling it needs (each a finite number > 0, or a list of them)
ROPE_TYPES = {
    "default": (),
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
    "longrope": ("short_factor", "long_factor", "original_max_position_embeddings"),
    "freq_factors": ("factors",),  # GGUF: llama.cpp's rope_freqs tensor (Llama 3.1's llama3 scaling)
}


def check_config(values: Mapping[str, Any] | Any, where: str, names: Mapping[str, str] | None = None,
                 extra_ints: tuple[str, ...] = ()) -> None:
    """Refuse a config whose fields webrt cannot build a model from.

    values: a ModelConfig, or webrt's field names -> the values read from the source (before any
    arithmetic on them); head_dim may be None (then hidden_size must divide evenly by
    num_attention_heads). Absent optional fields are skipped. names: webrt field -> the source's name for it (e.g. "llama.block_count"), for the
    messages. extra_ints: more fields a family reads that must be integers >= 1.
    """
    names = names or {}
    if dataclasses.is_dataclass(values):
        values = dataclasses.asdict(values)

    def fail(field: str, expected: str) -> None:
        value = values.get(field)
        shown = "missing" if field in values and value is None else f"{value!r}"
        raise WebrtError(f"{where}: {names.get(field, field)} is {shown}; expected {expected}")

    for field in (*POSITIVE_INTS, *extra_ints):
        if field not in values or (field in ("head_dim", "sliding_window") and values[field] is None):
            continue
        if not _is_int(values[field]) or values[field] < 1:
            fail(field, "an integer >= 1")
    for field in POSITIVE_FLOATS:
        if field in values and not (_is_number(values[field]) and math.isfinite(values[field]) and values[field] > 0):
            fail(field, "a finite number > 0")
    for field in OPTIONAL_POSITIVE_FLOATS:
        value = values.get(field)
        if value is not None and not (_is_number(value) and math.isfinite(value) and value > 0):
            fail(field, "a finite number > 0, or null")
    for field in BOOLS:
        if field in values and not isinstance(values[field], bool):
            fail(field, "true or false")

    heads, kv_heads = values.get("num_attention_heads"), values.get("num_key_value_heads")
    if heads is not None and kv_heads is not None and heads % kv_heads:
        fail("num_key_value_heads", f"a divisor of {names.get('num_attention_heads', 'num_attention_heads')} "
                                    f"({heads}), e.g. {_divisors(heads)}")
    hidden, head_dim = values.get("hidden_size"), values.get("head_dim")
    if head_dim is None and hidden is not None and heads is not None and hidden % heads:
        fail("num_attention_heads", f"a divisor of {names.get('hidden_size', 'hidden_size')} ({hidden}), "
                                    f"e.g. {_divisors(hidden)}, or a head_dim given explicitly")
    if head_dim is not None and head_dim % 2:
        fail("head_dim", "an even number (rotary embeddings rotate the two halves of each head)")
    if "rope_scaling" in values:
        _check_rope(values["rope_scaling"] or {}, where, names.get("rope_scaling", "rope_scaling"))


def _check_rope(scaling: Any, where: str, name: str) -> None:
    if not isinstance(scaling, Mapping):
        raise WebrtError(f"{where}: {name} is {scaling!r}; expected an object with rope_type and its parameters")
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise WebrtError(f"{where}: {name}.rope_type is {kind!r}; supported: {', '.join(ROPE_TYPES)}")
    for key in ROPE_TYPES[kind]:
        value = scaling.get(key)
        if value is None:
            raise WebrtError(f"{where}: {name}.{key} is missing; rope type {kind!r} needs "
                             f"{', '.join(ROPE_TYPES[kind])}")
        if not all(_is_number(v) and math.isfinite(v) and v > 0 for v in (value if isinstance(value, list) else [value])):
            raise WebrtError(f"{where}: {name}.{key} is {value!r}; expected a finite number > 0"
                             f"{' (each)' if isinstance(value, list) else ''}")
    if kind == "llama3" and scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        raise WebrtError(f"{where}: {name}.high_freq_factor is {scaling['high_freq_factor']!r}; expected more than "
                         f"low_freq_factor ({scaling['low_freq_factor']!r})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _divisors(n: int) -> str:
    """A few divisors of n, for messages."""
    return ", ".join([str(d) for d in range(1, n + 1) if n % d == 0][:6]) if _is_int(n) and n > 0 else "1"


def need_int(value: Any, key: str, where: str) -> int:
    """value as read for key, refused unless it is an integer (3.7 or "12" are not sizes)."""
    if not _is_int(value):
        raise WebrtError(f"{where}: {key} is {value!r}; expected an integer")
    return value


# webrt field -> the config.json key every Hugging Face decoder family spells it with
HF_KEYS = {"vocab_size": "vocab_size", "hidden_size": "hidden_size", "intermediate_size": "intermediate_size",
           "num_hidden_layers": "num_hidden_layers", "num_attention_heads": "num_attention_heads",
           "num_key_value_heads": "num_key_value_heads", "head_dim": "head_dim", "rms_norm_eps": "rms_norm_eps",
           "context_window": "max_position_embeddings", "rope_theta": "rope_theta", "sliding_window": "sliding_window"}


# webrt field -> the GGUF metadata key (after the architecture's prefix) the importer maps it from
GGUF_KEYS = {"vocab_size": "vocab_size", "hidden_size": "embedding_length", "intermediate_size": "feed_forward_length",
             "num_hidden_layers": "block_count", "num_attention_heads": "attention.head_count",
             "num_key_value_heads": "attention.head_count_kv", "head_dim": "attention.key_length",
             "rms_norm_eps": "attention.layer_norm_rms_epsilon", "context_window": "context_length",
             "rope_theta": "rope.freq_base", "sliding_window": "attention.sliding_window"}


def gguf_names(arch: str) -> dict[str, str]:
    """Message names for a GGUF file's config fields: its own metadata keys (llama.block_count)."""
    return {field: f"{arch}.{key}" for field, key in GGUF_KEYS.items()}


def check_hf_config(raw: Mapping[str, Any], where: str, names: Mapping[str, str] | None = None) -> None:
    """The shared config.json keys, checked before a family maps them or does any arithmetic on
    them (a family's own keys are checked on its ModelConfig by check_config). Absent keys and
    nulls are left to the family, which knows its defaults. names: as check_config's (default:
    the config.json keys)."""
    values = {field: raw[key] for field, key in HF_KEYS.items() if raw.get(key) is not None}
    check_config(values, where, names=names or HF_KEYS)
