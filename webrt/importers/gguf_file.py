"""Import a LLaMA-architecture GGUF file (llama.cpp's format), with the `gguf` library.

Tensors in F32, F16, BF16 and the block types of webrt/weight_types.py (Q4_0 ... Q8_0, Q2_K ... Q6_K)
are read; the f32 mode dequantizes block types here, the q4f32 mode keeps each tensor's blocks in
its own type's layout. The tokenizer and
chat template embedded in the file are written out as Hugging Face tokenizer files
(webrt/importers/gguf_tokenizer.py), so the browser loads them exactly like a Hugging Face checkpoint's.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import ModelConfig, config_from_dict
from ..config_checks import gguf_names
from ..errors import WebrtError
from ..weight_types import TYPES
from ..models.gguf_mapping import GGUF_GLOBAL_NAMES, GGUFMetadata
from ..models.registry import family, family_for_gguf
from .gguf_tokenizer import read_vocab, write_tokenizer_files

BLOCK_TYPES = tuple(TYPES)  # kept in their own blocks by the q4f32 mode
SUPPORTED_TYPES = ("F32", "F16", "BF16", *BLOCK_TYPES)


def hf_name(gguf_name: str, layer_names: dict[str, str]) -> str | None:
    """The Hugging Face name of a GGUF tensor, with the family's per-layer names (registry)."""
    if gguf_name in GGUF_GLOBAL_NAMES:
        return GGUF_GLOBAL_NAMES[gguf_name]
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in layer_names:
        return f"model.layers.{parts[1]}.{layer_names[parts[2]]}.{parts[3]}"
    return None


def unpermute_rows(rows: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp interleaves the two rotary halves of each q/k head's rows; Hugging Face keeps
    them apart. Undo it (rows only, so quantized blocks, which run along a row, move whole)."""
    n = rows.shape[0]
    return rows.reshape(heads, n // heads // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


@dataclass
class GGUFCheckpoint:
    path: Path
    config: ModelConfig
    reader: object
    architecture: str = "llama"  # general.architecture
    tokenizer_files: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.stem

    def raw_tensors(self) -> dict:
        """HF name -> (the gguf tensor, heads to unpermute by or None)."""
        cfg = self.config
        rows = family(cfg.family)
        permuted = self.architecture in rows.gguf_permuted_qk
        out = {}
        for t in self.reader.tensors:
            name = hf_name(t.name, rows.gguf_layer_names)
            if name is None:
                continue
            heads = None if not permuted else cfg.num_attention_heads if ".q_proj." in name else \
                cfg.num_key_value_heads if ".k_proj." in name else None
            out[name] = (t, heads)
        return out

    def code_bits(self) -> dict[str, str]:
        """The GGUF type of every tensor stored in blocks (Q4_K, Q8_0, ...; webrt/weight_types.py),
        by Hugging Face name: the q4f32 mode keeps each in its own type
        (QuantizedWeight / QLinear.for_type in webrt/models/quantized.py)."""
        return {name: t.tensor_type.name for name, (t, _) in self.raw_tensors().items()
                if t.tensor_type.name in BLOCK_TYPES}

    weight_types = code_bits

    def quantized(self, name: str):
        """(GGUF type name, the tensor's own blocks uint8 [rows, bytes]), rows unpermuted like
        load_weights (blocks run along a row, so they move whole); None for float tensors."""
        tensor, heads = self.raw_tensors()[name]
        if tensor.tensor_type.name not in BLOCK_TYPES:
            return None
        raw = np.asarray(tensor.data)
        return tensor.tensor_type.name, np.ascontiguousarray(unpermute_rows(raw, heads) if heads else raw)

    def load_weights(self, expected: dict) -> dict[str, np.ndarray]:
        import gguf

        raw = self.raw_tensors()
        weights = {}
        for name, (shape, dtype) in expected.items():
            if name not in raw:
                raise WebrtError(f"{self.path}: tensor for {name!r} is missing from the GGUF file")
            tensor, heads = raw[name]
            array = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(dtype)
            if tuple(array.shape) != tuple(shape):
                raise WebrtError(f"{self.path}: tensor {tensor.name} has shape {list(array.shape)}, "
                                 f"the file's metadata implies {list(shape)}")
            weights[name] = np.ascontiguousarray(unpermute_rows(array, heads) if heads else array)
        return weights


def open_gguf(path: Path, workdir: Path | None = None) -> GGUFCheckpoint:
    import gguf

    if not path.is_file():
        raise WebrtError(f"{path} does not exist: expected a .gguf file")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as err:  # noqa: BLE001 - the reader raises many kinds of errors on bad files
        raise WebrtError(f"{path} is not a readable GGUF file ({err})") from None

    def meta(key, default=None):
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    arch = meta("general.architecture")
    rows = family_for_gguf(arch, str(path))
    for t in reader.tensors:
        if t.tensor_type.name not in SUPPORTED_TYPES:
            others = sorted({u.tensor_type.name for u in reader.tensors} - set(SUPPORTED_TYPES) - {t.tensor_type.name})
            also = f" (also: {', '.join(others)})" if others else ""
            raise WebrtError(f"{path}: tensor {t.name} has type {t.tensor_type.name}, which webrt cannot read{also}; "
                             f"supported: {', '.join(SUPPORTED_TYPES)}")
    raw = rows.gguf_to_hf(GGUFMetadata(reader, arch))
    config = config_from_dict(raw, str(path), names=gguf_names(arch))
    ckpt = GGUFCheckpoint(path, config, reader, arch)
    ckpt.tokenizer_files = _write_tokenizer(path, meta, workdir or Path(tempfile.mkdtemp(prefix="webrt-tok-")))
    return ckpt


def _write_tokenizer(path: Path, meta, workdir: Path) -> list[Path]:
    """tokenizer.json, tokenizer_config.json and the chat template, built from the file's
    tokenizer.ggml.* metadata (webrt/importers/gguf_tokenizer.py; no transformers or torch)."""
    try:
        return write_tokenizer_files(read_vocab(meta), workdir)
    except WebrtError as err:
        raise WebrtError(f"{path}: {err}") from None
    except Exception as err:  # noqa: BLE001 - tokenizers raises plain Exceptions on malformed vocabularies
        raise WebrtError(f"{path}: the embedded tokenizer cannot be converted ({err})") from None
