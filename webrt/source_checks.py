"""Checks of a model folder that need none of the heavy imports (TVM, torch): `webrt compile` runs
them before anything else, so a malformed config.json or tokenizer fails in about a second, not
after TVM has loaded. The importers check the same things again as they read (GGUF files are
checked there only: their metadata and tokenizer are read with the file)."""

from __future__ import annotations

from pathlib import Path

from .config import read_config_json
from .config_checks import check_hf_config
from .errors import WebrtError
from .tokenizer_checks import check_tokenizer_files


def check_model_folder(source: Path | None) -> None:
    """A model path that exists; for a Hugging Face folder, config.json's shared keys and the
    tokenizer files. A GGUF file (and the default model) is left to its importer."""
    if source is None or source.is_file():
        return
    if not source.exists():
        raise WebrtError(f"{source} does not exist: expected a Hugging Face model folder "
                         "(config.json plus *.safetensors) or a .gguf file")
    raw = read_config_json(source)
    check_hf_config(raw, str(source / "config.json"))
    vocab = raw.get("vocab_size")
    check_tokenizer_files(sorted(p for p in source.iterdir() if p.is_file()), vocab if isinstance(vocab, int) else None)
