"""Import a Hugging Face model folder: config.json, *.safetensors, and the tokenizer files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ml_dtypes  # noqa: F401 - registers bfloat16 with numpy, so bf16 checkpoints load
import numpy as np
from safetensors import SafetensorError, safe_open

from ..config import ModelConfig, read_hf_config
from ..errors import WebrtError
from ..models.registry import family

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json", "vocab.json", "merges.txt", "tokenizer.model")


@dataclass
class HFCheckpoint:
    path: Path
    config: ModelConfig
    files: list[Path]           # the safetensors files
    tokenizer_files: list[Path]

    @property
    def name(self) -> str:
        return self.path.resolve().name

    def load_weights(self, expected: dict) -> dict[str, np.ndarray]:
        return load_weights(self, expected)

    def code_bits(self) -> dict[str, int]:
        return {}  # float checkpoints: every matrix is quantized here, to 4 bits

    def quantized(self, name: str):
        return None


def open_hf_folder(path: Path) -> HFCheckpoint:
    if not path.exists():
        raise WebrtError(f"{path} does not exist: expected a Hugging Face model folder "
                         "(config.json plus *.safetensors)")
    if not path.is_dir():
        raise WebrtError(f"{path} is a file: expected a Hugging Face model folder "
                         "(config.json plus *.safetensors) or a .gguf file")
    config = read_hf_config(path)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise WebrtError(f"{path} has no *.safetensors file: webrt reads weights in the safetensors "
                         "format (save with save_pretrained(..., safe_serialization=True))")
    tokenizer = [path / name for name in TOKENIZER_FILES if (path / name).is_file()]
    return HFCheckpoint(path, config, files, tokenizer)


def load_weights(ckpt: HFCheckpoint, expected: dict[str, tuple[tuple[int, ...], str]]) -> dict[str, np.ndarray]:
    """Read the tensors the model needs, checking each shape against what the config implies."""
    found: dict[str, tuple[Path, object]] = {}
    for file in ckpt.files:
        try:
            handle = safe_open(str(file), framework="numpy")
        except (SafetensorError, OSError) as err:
            raise WebrtError(f"{file} is not a readable safetensors file ({err}); "
                             "it may be truncated: copy or save the checkpoint again") from None
        for name in handle.keys():
            found[name] = (file, handle)
    weights = {}
    convert = family(ckpt.config.family).hf_weight  # e.g. Gemma's norms: 1 + w
    for name, (shape, dtype) in expected.items():
        if name not in found:
            raise WebrtError(f"{ckpt.path}: tensor {name!r} is missing from the safetensors files; "
                             f"{ckpt.config.architecture} with this config.json needs it")
        file, handle = found[name]
        try:
            array = handle.get_tensor(name)
        except (SafetensorError, OSError) as err:
            raise WebrtError(f"{file}: tensor {name!r} cannot be read ({err}); "
                             "the file may be truncated") from None
        if tuple(array.shape) != tuple(shape):
            raise WebrtError(f"{file}: tensor {name!r} has shape {list(array.shape)}, but config.json "
                             f"implies {list(shape)}")
        weights[name] = np.ascontiguousarray(convert(name, array.astype(dtype)))
    return weights
