"""Checks of a model folder that need none of the heavy imports (TVM, torch): `webrt compile` runs
them before anything else, so a malformed config.json or tokenizer fails in about a second, not
after TVM has loaded. The importers check the same things again as they read (GGUF files are
checked there only: their metadata and tokenizer are read with the file)."""

from __future__ import annotations

from pathlib import Path

from .config import read_config_json
from .config_checks import check_hf_config
from .tokenizer_checks import check_tokenizer_files


def check_model_folder(source: Path | None) -> None:
    """config.json's shared keys and the tokenizer files of a Hugging Face folder; anything else
    (the default model, a GGUF file, a missing path) is left to the importers."""
    if source is None or not source.is_dir() or not (source / "config.json").is_file():
        return
    raw = read_config_json(source)
    check_hf_config(raw, str(source / "config.json"))
    vocab = raw.get("vocab_size")
    check_tokenizer_files(sorted(p for p in source.iterdir() if p.is_file()), vocab if isinstance(vocab, int) else None)
