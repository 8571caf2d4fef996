"""Shared fixtures: random-weight models and their compiled artifacts, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models import make_hf_model, make_tiny_chat_model
from tests.without_torch import run_webrt
from webrt.build_artifact import compile_model


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    return make_hf_model(tmp_path_factory.mktemp("hf") / "llama", "llama", tie_word_embeddings=False)


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory) -> Path:
    return make_hf_model(tmp_path_factory.mktemp("hf") / "qwen2", "qwen2", tie_word_embeddings=True,
                         num_hidden_layers=3)


@pytest.fixture(scope="session")
def llama_artifact(llama_dir, tmp_path_factory) -> Path:
    return compile_model(llama_dir, tmp_path_factory.mktemp("art") / "llama", tuning_candidates=False)


@pytest.fixture(scope="session")
def qwen2_artifact(qwen2_dir, tmp_path_factory) -> Path:
    return compile_model(qwen2_dir, tmp_path_factory.mktemp("art") / "qwen2", tuning_candidates=False)



@pytest.fixture(scope="session")
def tiny_chat_artifact(tmp_path_factory) -> Path:
    """Compiled by `webrt compile` with torch and transformers blocked, as on a fresh install
    (tests/test_fresh_install.py relies on that)."""
    folder = make_tiny_chat_model(tmp_path_factory.mktemp("hf") / "tiny-chat")
    out = tmp_path_factory.mktemp("art") / "tiny-chat"
    run_webrt(["compile", str(folder), "-o", str(out)])
    return out


@pytest.fixture(scope="session")
def default_artifact(tmp_path_factory) -> Path:
    """The default model (SmolLM2-135M-Instruct, Q4_1 GGUF) as q4f32, with a 512-token cache;
    compiled by `webrt compile` with torch and transformers blocked, as on a fresh install."""
    out = tmp_path_factory.mktemp("art") / "smollm2"
    run_webrt(["compile", "-o", str(out), "--quantization", "q4f32", "--context-window", "512"])
    return out
