"""The main job works on a fresh install (`pip install -e .`, no test extra): compiling never needs
torch or transformers, and no runtime dependency pulls them in. `.ci/run` also runs the README's
first command itself in a clean virtual environment."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from tokenizers import Tokenizer

from tests.models import default_gguf
from tests.without_torch import run_webrt

NEVER_AT_RUNTIME = {"torch", "transformers"}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _artifact_tokenizer(artifact: Path) -> Tokenizer:
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert "tokenizer.json" in {f["file"] for f in manifest["files"]}
    return Tokenizer.from_file(str(artifact / "tokenizer.json"))


def test_default_model_compiles_without_torch(default_artifact):
    """The fixture compiled the default GGUF with torch and transformers blocked; its tokenizer
    and chat template render the question as transformers' GGUF conversion does."""
    from transformers import AutoTokenizer

    path = default_gguf()
    reference = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    prompt = reference.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    assert (default_artifact / "chat_template.jinja").read_text() == reference.chat_template
    ids = _artifact_tokenizer(default_artifact).encode(prompt, add_special_tokens=False).ids
    assert ids == reference(prompt, add_special_tokens=False)["input_ids"]


def test_hf_folder_compiles_without_torch(tiny_chat_artifact):
    """The fixture compiled a Hugging Face folder with torch and transformers blocked."""
    manifest = json.loads((tiny_chat_artifact / "manifest.json").read_text())
    assert manifest["model"]["source"] == "huggingface"
    assert _artifact_tokenizer(tiny_chat_artifact).encode("Paris").ids


def test_blocked_imports_really_fail():
    """The block that the fixtures compile under is real: importing torch through it fails."""
    code = "import sys; from tests.without_torch import BlockedImports; sys.meta_path.insert(0, BlockedImports()); import torch"
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "blocked by tests/without_torch.py" in done.stderr


def _runtime_closure(name: str, seen: set[str]) -> set[str]:
    """Every installed distribution that `name` requires without extras, recursively."""
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return seen
    seen.add(key)
    try:
        requires = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return seen  # not installed here, so nothing below it is either
    for line in requires:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            _runtime_closure(requirement.name, seen)
    return seen


def test_no_runtime_dependency_pulls_torch():
    closure = _runtime_closure("webrt", set())
    assert "apache-tvm" in closure and "tokenizers" in closure  # the walk sees the real dependencies
    assert not closure & NEVER_AT_RUNTIME, f"runtime dependencies pull in {sorted(closure & NEVER_AT_RUNTIME)}"
