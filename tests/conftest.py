"""Shared fixtures: random-weight models and their compiled artifacts, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models import default_gguf, make_hf_model, make_tiny_chat_model
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
    return compile_model(llama_dir, tmp_path_factory.mktemp("art") / "llama")


@pytest.fixture(scope="session")
def qwen2_artifact(qwen2_dir, tmp_path_factory) -> Path:
    return compile_model(qwen2_dir, tmp_path_factory.mktemp("art") / "qwen2")



@pytest.fixture(scope="session")
def tiny_chat_artifact(tmp_path_factory) -> Path:
    folder = make_tiny_chat_model(tmp_path_factory.mktemp("hf") / "tiny-chat")
    return compile_model(folder, tmp_path_factory.mktemp("art") / "tiny-chat")


@pytest.fixture(scope="session")
def default_artifact(tmp_path_factory) -> Path:
    """The default model (SmolLM2-135M-Instruct, Q4_1 GGUF) as q4f32, with a 512-token cache."""
    return compile_model(default_gguf(), tmp_path_factory.mktemp("art") / "smollm2", "q4f32", 512)
