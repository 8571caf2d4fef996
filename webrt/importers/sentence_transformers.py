"""Import an encoder folder: a sentence-transformers model (modules.json, 1_Pooling/config.json,
2_Normalize, sentence_bert_config.json) or a plain Hugging Face BertModel / XLMRobertaModel folder.

The pooling, the normalization and the truncation length come from the sentence-transformers files.
A plain folder has none of them: it is pooled by mean over the kept tokens, not normalized, and
truncated at the model's position limit; `note` says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import WebrtError
from ..models.bert import ENCODER_ARCHITECTURES, EncoderConfig, encoder_config
from .hf import TOKENIZER_FILES, HFCheckpoint

POOLING_TYPE = "sentence_transformers.models.Pooling"
NORMALIZE_TYPE = "sentence_transformers.models.Normalize"
TRANSFORMER_TYPES = ("sentence_transformers.models.Transformer", "sentence_transformers.base.modules.Transformer")
# 1_Pooling/config.json keys -> webrt's pooling names
POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise WebrtError(f"{path} is not readable JSON ({err})") from None


def is_encoder_folder(path: Path) -> bool:
    """Whether config.json names an encoder architecture (BERT family)."""
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # read_hf_config reports it
    return isinstance(raw, dict) and (raw.get("architectures") or [None])[0] in ENCODER_ARCHITECTURES


@dataclass
class EncoderCheckpoint(HFCheckpoint):
    note: str | None = None     # how the pooling was chosen, when the folder did not say

    @property
    def name(self) -> str:
        # packages ship the checkpoint as <package>/model/: the package names it
        folder = self.path.resolve()
        return folder.parent.name if folder.name == "model" else folder.name


def read_pooling(path: Path, cfg: EncoderConfig) -> str | None:
    """Fill cfg.pooling / normalize / max_seq_length from the sentence-transformers files; returns a
    note when the folder has none and the defaults apply."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        cfg.pooling, cfg.normalize = "mean", False
        return (f"{path} has no modules.json (not a sentence-transformers folder): embeddings are the mean "
                "of the token states, not normalized")
    modules = _json(modules_file)
    if not isinstance(modules, list):
        raise WebrtError(f"{modules_file} must hold a list of modules")
    types = [m.get("type") for m in modules]
    for kind in types:
        if kind not in (POOLING_TYPE, NORMALIZE_TYPE, *TRANSFORMER_TYPES):
            raise WebrtError(f"{modules_file}: module {kind!r} is not supported; supported: Transformer, "
                             "Pooling, Normalize")
    cfg.normalize = NORMALIZE_TYPE in types
    pooling = next((m for m in modules if m.get("type") == POOLING_TYPE), None)
    cfg.pooling = "mean"
    if pooling is not None:
        config = _json(path / pooling.get("path", "") / "config.json")
        modes = [name for key, name in POOLING_KEYS.items() if config.get(key)]
        others = [k for k, v in config.items() if k.startswith("pooling_mode") and v and k not in POOLING_KEYS]
        if "pooling_mode" in config:  # newer sentence-transformers write the mode by name
            modes = [{"mean": "mean", "cls": "cls", "max": "max", "mean_sqrt_len_tokens": "mean_sqrt_len"}
                     .get(config["pooling_mode"], config["pooling_mode"])]
        if others or len(modes) != 1 or modes[0] not in POOLING_KEYS.values():
            raise WebrtError(f"{path / pooling.get('path', '')}/config.json: pooling {others or modes} is not "
                             "supported; supported: exactly one of mean, cls, max, mean_sqrt_len")
        cfg.pooling = modes[0]
    bert_config = path / "sentence_bert_config.json"
    if bert_config.is_file():
        length = _json(bert_config).get("max_seq_length")
        if length is not None:
            cfg.max_seq_length = min(int(length), cfg.max_seq_length)
    return None


def open_encoder_folder(path: Path) -> EncoderCheckpoint:
    cfg = encoder_config(_json(path / "config.json"), str(path / "config.json"))
    note = read_pooling(path, cfg)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise WebrtError(f"{path} has no *.safetensors file: webrt reads weights in the safetensors "
                         "format (save with save_pretrained(..., safe_serialization=True))")
    tokenizer = [path / name for name in TOKENIZER_FILES if (path / name).is_file()]
    if not (path / "tokenizer.json").is_file():
        raise WebrtError(f"{path} has no tokenizer.json: the browser tokenizer reads that file "
                         "(save the tokenizer with a fast tokenizer's save_pretrained)")
    return EncoderCheckpoint(path, cfg, files, tokenizer, note)
