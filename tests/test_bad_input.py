"""Bad input to `webrt compile` and `webrt run`: one clear line on stderr, exit 2, nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.models import make_hf_model


def webrt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webrt.cli", *args], capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("webrt: error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.partial-*"))


@pytest.fixture(scope="module")
def good_model(tmp_path_factory) -> Path:
    return make_hf_model(tmp_path_factory.mktemp("hf") / "m", "llama", num_hidden_layers=1)


@pytest.fixture
def model_copy(good_model, tmp_path) -> Path:
    return Path(shutil.copytree(good_model, tmp_path / "model"))


def test_missing_path(tmp_path):
    out = tmp_path / "out"
    assert_one_line_error(webrt("compile", str(tmp_path / "nope"), "-o", str(out)), "does not exist")
    assert_nothing_written(out)


def test_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    assert_one_line_error(webrt("compile", str(tmp_path / "empty"), "-o", str(out)), "no config.json")
    assert_nothing_written(out)


def test_invalid_config_json(model_copy, tmp_path):
    (model_copy / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], ')
    out = tmp_path / "out"
    assert_one_line_error(webrt("compile", str(model_copy), "-o", str(out)), "not valid JSON")
    assert_nothing_written(out)


def test_unknown_architecture(model_copy, tmp_path):
    config = json.loads((model_copy / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (model_copy / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert_one_line_error(webrt("compile", str(model_copy), "-o", str(out)),
                          "GPT2LMHeadModel", "LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM")
    assert_nothing_written(out)


def test_missing_safetensors(model_copy, tmp_path):
    (model_copy / "model.safetensors").unlink()
    out = tmp_path / "out"
    assert_one_line_error(webrt("compile", str(model_copy), "-o", str(out)), "no *.safetensors")
    assert_nothing_written(out)


def test_truncated_safetensors(model_copy, tmp_path):
    path = model_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    out = tmp_path / "out"
    assert_one_line_error(webrt("compile", str(model_copy), "-o", str(out)), "model.safetensors", "truncated")
    assert_nothing_written(out)


def test_tensor_shape_disagrees_with_config(model_copy, tmp_path):
    config = json.loads((model_copy / "config.json").read_text())
    config["intermediate_size"] = 384
    (model_copy / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert_one_line_error(webrt("compile", str(model_copy), "-o", str(out)),
                          "mlp.gate_proj.weight", "[512, 256]", "[384, 256]")
    assert_nothing_written(out)


@contextmanager
def unwritable_folder(path: Path):
    """A folder nobody may write into, root included (root ignores modes, not the immutable flag)."""
    path.mkdir()
    immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(path)]).returncode == 0
    if not immutable:
        path.chmod(0o555)
    try:
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755)


def test_unwritable_output_folder(good_model, tmp_path):
    with unwritable_folder(tmp_path / "locked") as locked:
        out = locked / "artifact"
        assert_one_line_error(webrt("compile", str(good_model), "-o", str(out)), "cannot write", str(out))
        assert list(locked.iterdir()) == []


def test_non_artifact_output_folder_is_left_alone(good_model, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    assert_one_line_error(webrt("compile", str(good_model), "-o", str(out)), "not empty")
    assert (out / "notes.txt").read_text() == "precious"


def test_unknown_quantization(good_model, tmp_path):
    out = tmp_path / "out"
    assert_one_line_error(webrt("compile", str(good_model), "-o", str(out), "--quantization", "q3"), "q3", "f32")
    assert_nothing_written(out)


def test_run_rejects_missing_artifact_and_bad_tokens(tmp_path, llama_artifact):
    assert_one_line_error(webrt("run", str(tmp_path / "nope"), "--tokens", "1,2"), "not a folder")
    assert_one_line_error(webrt("run", str(llama_artifact), "--tokens", "1,x"), "comma-separated")
    assert_one_line_error(webrt("run", str(llama_artifact), "--tokens", "1,999999"), "[0, 2048)")
    assert_one_line_error(webrt("run", str(llama_artifact), "--tokens", "1,2", "--threads", "2"),
                          "--threads 2", "--device wasm")
    assert_one_line_error(webrt("run", str(llama_artifact), "--tokens", "1,2", "--device", "wasm", "--threads", "0"),
                          "--threads")


def test_run_refuses_other_format_version(tmp_path, llama_artifact):
    copy = Path(shutil.copytree(llama_artifact, tmp_path / "old"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 999
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(webrt("run", str(copy), "--tokens", "1,2"), "format version 999", "recompile")


def write_gguf(path: Path, arch: str, tensor_type: str = "F32") -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_embedding_length(32)
    writer.add_head_count(4)
    kind = gguf.GGMLQuantizationType[tensor_type]
    data = np.zeros((32, 32), np.float32) if tensor_type == "F32" else np.zeros((32, 22), np.uint8)
    writer.add_tensor("blk.0.attn_q.weight", data, raw_dtype=None if tensor_type == "F32" else kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_with_unsupported_architecture(tmp_path):
    out = tmp_path / "out"
    model = write_gguf(tmp_path / "gpt2.gguf", "gpt2")
    assert_one_line_error(webrt("compile", str(model), "-o", str(out)), "architecture 'gpt2'", "supported: llama")
    assert_nothing_written(out)


def test_gguf_with_unsupported_tensor_type(tmp_path):
    out = tmp_path / "out"
    model = write_gguf(tmp_path / "q5.gguf", "llama", "Q5_0")
    assert_one_line_error(webrt("compile", str(model), "-o", str(out)), "Q5_0", "Q4_0, Q4_1, Q8_0")
    assert_nothing_written(out)


def test_truncated_gguf(tmp_path):
    from tests.models import default_gguf

    out = tmp_path / "out"
    model = tmp_path / "cut.gguf"
    with open(default_gguf(), "rb") as full:
        model.write_bytes(full.read(3 << 20))
    assert_one_line_error(webrt("compile", str(model), "-o", str(out)), "cut.gguf", "GGUF")
    assert_nothing_written(out)
