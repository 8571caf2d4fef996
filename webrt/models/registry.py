"""The architecture registry: one row per model family.

A row names the family's Hugging Face architectures and GGUF architecture, and gives its model
class and the functions that map a config.json (and GGUF metadata) onto ModelConfig and checkpoint
tensor names onto the model's parameter names. Adding a family is its own file plus one row here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import WebrtError
from . import bert, gemma3, llama, phi3, qwen3
from .gguf_mapping import GGUF_LAYER_NAMES, gguf_metadata_to_hf


def _no_change(name: str, array: np.ndarray) -> np.ndarray:
    return array


@dataclass(frozen=True)
class Family:
    name: str
    hf_architectures: tuple[str, ...]     # config.json "architectures" values
    model: type                           # a CausalLM subclass: model(cfg, bits)
    config_from_hf: Callable              # ConfigReader -> ModelConfig
    gguf_architectures: tuple[str, ...] = ()  # general.architecture values
    gguf_to_hf: Callable = gguf_metadata_to_hf  # GGUFMetadata -> config.json dict
    gguf_layer_names: dict = field(default_factory=lambda: dict(GGUF_LAYER_NAMES))
    gguf_permuted_qk: tuple[str, ...] = ()  # GGUF archs whose q/k rows llama.cpp interleaved (llama)
    hf_weight: Callable = _no_change       # (name, array) -> array, for a Hugging Face tensor as it loads


FAMILIES = (
    Family("llama", ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"), llama.LlamaForCausalLM,
           llama.config_from_hf, ("llama", "qwen2"), gguf_to_hf=llama.gguf_to_hf, gguf_permuted_qk=("llama",)),
    Family("qwen3", ("Qwen3ForCausalLM",), qwen3.Qwen3ForCausalLM, qwen3.config_from_hf, ("qwen3",),
           gguf_to_hf=qwen3.gguf_to_hf, gguf_layer_names=qwen3.GGUF_LAYER_NAMES),
    Family("gemma3", ("Gemma3ForCausalLM",), gemma3.Gemma3ForCausalLM, gemma3.config_from_hf, ("gemma3",),
           gguf_to_hf=gemma3.gguf_to_hf, gguf_layer_names=gemma3.GGUF_LAYER_NAMES, hf_weight=gemma3.hf_weight),
    Family("phi3", ("Phi3ForCausalLM",), phi3.Phi3ForCausalLM, phi3.config_from_hf, ("phi3",),
           gguf_to_hf=phi3.gguf_to_hf, gguf_layer_names=phi3.GGUF_LAYER_NAMES),
    Family("bert", bert.ENCODER_ARCHITECTURES, bert.BertEncoder, bert.config_from_hf),  # encoders: build_encoder.py
)

SUPPORTED_ARCHITECTURES = tuple(arch for f in FAMILIES for arch in f.hf_architectures)
SUPPORTED_GGUF_ARCHITECTURES = tuple(arch for f in FAMILIES for arch in f.gguf_architectures)


def family_for_hf(arch: str, where: str) -> Family:
    for family in FAMILIES:
        if arch in family.hf_architectures:
            return family
    raise WebrtError(f"{where}: architecture {arch!r} is not supported; "
                     f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")


def family_for_gguf(arch, where: str) -> Family:
    for family in FAMILIES:
        if arch in family.gguf_architectures:
            return family
    raise WebrtError(f"{where}: GGUF architecture {arch!r} is not supported; "
                     f"supported: {', '.join(SUPPORTED_GGUF_ARCHITECTURES)}")


def family(name: str) -> Family:
    """The row of a ModelConfig's `family`."""
    return next(f for f in FAMILIES if f.name == name)
