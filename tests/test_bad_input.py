"""Bad input on every verb: one `webrt: error:` line naming what is wrong, exit code 2, no traceback,
nothing left behind (not even a temporary folder) and nothing of the user's clobbered.

Each case is one row of CASES: how to set up the bad input in a scratch folder, the command line,
and fragments the error line must hold. The check around each row snapshots every file under the
scratch folder (and the shared artifact) before and after the command, and gives the command a
TMPDIR of its own that must stay empty.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.models import make_hf_model


def webrt(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webrt.cli", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("webrt: error:")]
    assert len(errors) == 1 and len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@contextmanager
def unwritable_folder(path: Path):
    """A folder nobody may write into, root included (root ignores modes, not the immutable flag)."""
    path.mkdir()
    immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    if not immutable:
        path.chmod(0o555)
    try:
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under root with its size and modification time."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (path.is_dir(), st.st_size, st.st_mtime_ns)
    return out


class Scratch:
    """The folder a case sets its bad input up in, with helpers for the usual ingredients."""

    def __init__(self, root: Path, good_model: Path, artifact: Path, stack: ExitStack):
        self.root, self.good_model, self.artifact, self.stack = root, good_model, artifact, stack

    def path(self, name: str) -> str:
        return str(self.root / name)

    def file(self, name: str = "a-file", text: str = "mine") -> str:
        (self.root / name).write_text(text)
        return self.path(name)

    def folder_with_notes(self, name: str = "mine") -> str:
        (self.root / name).mkdir()
        (self.root / name / "notes.txt").write_text("precious")
        return self.path(name)

    def locked(self, name: str = "locked") -> str:
        return str(self.stack.enter_context(unwritable_folder(self.root / name)))

    def model(self, config: dict | None = None, drop: tuple[str, ...] = (), files: dict | None = None) -> str:
        """A copy of the good model with config.json keys replaced (None removes one), files dropped
        or written."""
        folder = Path(shutil.copytree(self.good_model, self.root / "model"))
        if config:
            raw = json.loads((folder / "config.json").read_text())
            raw.update(config)
            raw = {k: v for k, v in raw.items() if v is not None}
            (folder / "config.json").write_text(json.dumps(raw))
        for name in drop:
            (folder / name).unlink()
        for name, text in (files or {}).items():
            (folder / name).write_text(text if isinstance(text, str) else json.dumps(text))
        return str(folder)

    def artifact_copy(self, manifest: dict | None = None) -> str:
        folder = Path(shutil.copytree(self.artifact, self.root / "artifact"))
        if manifest:
            raw = json.loads((folder / "manifest.json").read_text())
            raw.update(manifest)
            (folder / "manifest.json").write_text(json.dumps(raw))
        return str(folder)

    def taken_port(self) -> str:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        self.stack.callback(sock.close)
        return str(sock.getsockname()[1])

    def truncated(self, name: str) -> str:
        folder = Path(self.model())
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
        return str(folder)

    def gguf(self, arch: str, tensor_type: str = "F32", **metadata: int) -> str:
        return str(write_gguf(self.root / f"{arch}-{tensor_type}.gguf", arch, tensor_type, **metadata))

    def cut_gguf(self) -> str:
        from tests.models import default_gguf

        with open(default_gguf(), "rb") as full:
            (self.root / "cut.gguf").write_bytes(full.read(3 << 20))
        return self.path("cut.gguf")


def write_gguf(path: Path, arch: str, tensor_type: str = "F32", **metadata: int) -> Path:
    """A one-tensor GGUF file; metadata: more uint32 keys under the architecture's prefix."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(metadata.pop("block_count", 1))
    writer.add_embedding_length(32)
    writer.add_head_count(4)
    for key, value in metadata.items():
        writer.add_uint32(f"{arch}.{key}", value)
    kind = gguf.GGMLQuantizationType[tensor_type]
    data = np.zeros((32, 32), np.float32) if tensor_type == "F32" else \
        np.zeros((32, gguf.GGML_QUANT_SIZES[kind][1]), np.uint8)  # one block of 32 weights per row
    writer.add_tensor("blk.0.attn_q.weight", data, raw_dtype=None if tensor_type == "F32" else kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


TOKENIZER_CONFIG = {"bos_token": "<s>", "eos_token": "</s>",
                    "chat_template": "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"}


def word_tokenizer_json() -> str:
    """A small valid tokenizer.json, made with the tokenizers library."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer.to_str()


def with_tokenizer(s: Scratch, template: str | None = None, tokenizer: str | None = None) -> str:
    config = dict(TOKENIZER_CONFIG, **({"chat_template": template} if template is not None else {}))
    return s.model(files={"tokenizer.json": tokenizer if tokenizer is not None else word_tokenizer_json(),
                          "tokenizer_config.json": config})


# (id, args from a Scratch, fragments of the error line). The three marked FAST are the issue's
# own cases: they must fail in under 5 s (before TVM loads).
CASES = [
    # compile: output paths first
    ("compile-output-is-file", lambda s: ["compile", s.good_model, "-o", s.file()], ["a-file is a file"]),
    ("compile-output-parent-is-file", lambda s: ["compile", s.good_model, "-o", s.file() + "/out"], ["is a file"]),
    ("compile-output-not-an-artifact", lambda s: ["compile", s.good_model, "-o", s.folder_with_notes()], ["not empty"]),
    ("compile-output-unwritable", lambda s: ["compile", s.good_model, "-o", s.locked() + "/artifact"], ["cannot write", "locked"]),
    # compile: the checkpoint
    ("compile-missing-path", lambda s: ["compile", s.path("nope"), "-o", s.path("out")], ["does not exist"]),
    ("compile-no-config", lambda s: ["compile", str(Path(s.folder_with_notes("empty"))), "-o", s.path("out")], ["no config.json"]),
    ("compile-config-not-json", lambda s: ["compile", s.model(files={"config.json": '{"vocab_size": '}), "-o", s.path("out")],
     ["config.json is not valid JSON"]),
    ("compile-unknown-architecture", lambda s: ["compile", s.model({"architectures": ["GPT2LMHeadModel"]}), "-o", s.path("out")],
     ["GPT2LMHeadModel", "LlamaForCausalLM"]),
    ("compile-negative-layers", lambda s: ["compile", s.model({"num_hidden_layers": -1}), "-o", s.path("out")],
     ["num_hidden_layers is -1", "integer >= 1"]),
    ("compile-fractional-layers", lambda s: ["compile", s.model({"num_hidden_layers": 2.5}), "-o", s.path("out")],
     ["num_hidden_layers is 2.5"]),
    ("compile-zero-heads", lambda s: ["compile", s.model({"num_attention_heads": 0}), "-o", s.path("out")],
     ["num_attention_heads is 0"]),
    ("compile-kv-heads-not-dividing", lambda s: ["compile", s.model({"num_key_value_heads": 3}), "-o", s.path("out")],
     ["num_key_value_heads is 3", "divisor of num_attention_heads (4)"]),
    ("compile-heads-not-dividing-hidden", lambda s: ["compile", s.model({"num_attention_heads": 6, "num_key_value_heads": 6, "head_dim": None}),
                                                     "-o", s.path("out")], ["num_attention_heads is 6", "hidden_size (256)"]),
    ("compile-negative-eps", lambda s: ["compile", s.model({"rms_norm_eps": -1e-5}), "-o", s.path("out")],
     ["rms_norm_eps is -1e-05", "finite number > 0"]),
    ("compile-vocab-as-string", lambda s: ["compile", s.model({"vocab_size": "2048"}), "-o", s.path("out")],
     ["vocab_size is '2048'"]),
    ("compile-unknown-rope-type", lambda s: ["compile", s.model({"rope_scaling": {"rope_type": "yarn", "factor": 2.0},
                                                                 "rope_parameters": None}), "-o", s.path("out")],
     ["yarn", "llama3"]),
    ("compile-rope-missing-key", lambda s: ["compile", s.model({"rope_scaling": {"rope_type": "llama3", "factor": 8.0},
                                                                "rope_parameters": None}), "-o", s.path("out")],
     ["low_freq_factor is missing"]),
    ("compile-missing-safetensors", lambda s: ["compile", s.model(drop=("model.safetensors",)), "-o", s.path("out")],
     ["no *.safetensors"]),
    ("compile-truncated-safetensors", lambda s: ["compile", s.truncated("model.safetensors"), "-o", s.path("out")],
     ["model.safetensors", "truncated"]),
    ("compile-shape-disagrees", lambda s: ["compile", s.model({"intermediate_size": 384}), "-o", s.path("out")],
     ["mlp.gate_proj.weight", "[512, 256]", "[384, 256]"]),
    ("compile-tokenizer-not-json", lambda s: ["compile", s.model(files={"tokenizer.json": "{not json"}), "-o", s.path("out")],
     ["tokenizer.json cannot be loaded by the tokenizers library"]),
    ("compile-tokenizer-bigger-than-vocab", lambda s: ["compile", s.model({"vocab_size": 2}, files={
        "tokenizer.json": word_tokenizer_json()}), "-o", s.path("out")], ["has 4 tokens", "vocab_size 2"]),
    ("compile-tokenizer-config-not-json", lambda s: ["compile", s.model(files={"tokenizer_config.json": "{"}), "-o", s.path("out")],
     ["tokenizer_config.json is not valid JSON"]),
    ("compile-chat-template-syntax", lambda s: ["compile", with_tokenizer(s, "{% for m in messages %}{{ m.content }"),
                                                "-o", s.path("out")], ["tokenizer_config.json", "chat template fails"]),
    ("compile-chat-template-raises", lambda s: ["compile", with_tokenizer(s, "{{ raise_exception('roles must alternate') }}"),
                                                "-o", s.path("out")], ["roles must alternate"]),
    ("compile-chat-template-file", lambda s: ["compile", s.model(files={"chat_template.jinja": "{% if %}"}), "-o", s.path("out")],
     ["chat_template.jinja", "chat template fails"]),
    ("compile-unknown-quantization", lambda s: ["compile", s.good_model, "-o", s.path("out"), "--quantization", "q3"],
     ["q3", "f32"]),
    ("compile-unknown-schedule", lambda s: ["compile", s.good_model, "-o", s.path("out"), "--schedule", "fastest"],
     ["fastest", "portable"]),
    ("compile-zero-context-window", lambda s: ["compile", s.good_model, "-o", s.path("out"), "--context-window", "0"],
     ["--context-window"]),
    ("compile-context-window-too-long", lambda s: ["compile", s.good_model, "-o", s.path("out"), "--context-window", "4096"],
     ["--context-window 4096", "[1, 256]"]),
    ("compile-missing-tuning-db", lambda s: ["compile", s.good_model, "-o", s.path("out"), "--tuning-db", s.path("db.json")],
     ["--tuning-db", "does not exist"]),
    ("compile-tuning-db-without-candidates", lambda s: ["compile", s.good_model, "-o", s.path("out"), "--tuning-db",
                                                        s.path("db.json"), "--no-tuning-candidates"],
     ["--tuning-db needs the schedule candidates", "drop --no-tuning-candidates"]),
    ("compile-gguf-architecture", lambda s: ["compile", s.gguf("gpt2"), "-o", s.path("out")], ["gpt2"]),
    ("compile-gguf-tensor-type", lambda s: ["compile", s.gguf("llama", "IQ4_NL"), "-o", s.path("out")],
     ["blk.0.attn_q.weight", "IQ4_NL", "Q4_K, Q5_K, Q6_K"]),
    ("compile-gguf-zero-layers", lambda s: ["compile", s.gguf("llama", block_count=0, vocab_size=32, feed_forward_length=64,
                                                              context_length=64), "-o", s.path("out")],
     ["llama.block_count is 0", "integer >= 1"]),
    ("compile-truncated-gguf", lambda s: ["compile", s.cut_gguf(), "-o", s.path("out")], ["cut.gguf"]),
    # run
    ("run-missing-artifact", lambda s: ["run", s.path("nope"), "--tokens", "1,2"], ["not a folder"]),
    ("run-folder-without-manifest", lambda s: ["run", s.folder_with_notes(), "--tokens", "1,2"], ["no manifest.json"]),
    ("run-other-format-version", lambda s: ["run", s.artifact_copy({"format_version": 999}), "--tokens", "1,2"],
     ["format version 999", "recompile"]),
    ("run-tokens-not-integers", lambda s: ["run", s.artifact, "--tokens", "1,x"], ["comma-separated"]),
    ("run-tokens-empty", lambda s: ["run", s.artifact, "--tokens", ","], ["--tokens is empty"]),
    ("run-tokens-outside-vocab", lambda s: ["run", s.artifact, "--tokens", "1,999999"], ["[0, 2048)"]),
    ("run-threads-with-webgpu", lambda s: ["run", s.artifact, "--tokens", "1,2", "--threads", "2"], ["--threads 2", "--device wasm"]),
    ("run-zero-threads", lambda s: ["run", s.artifact, "--tokens", "1", "--device", "wasm", "--threads", "0"], ["--threads"]),
    ("run-unknown-device", lambda s: ["run", s.artifact, "--tokens", "1", "--device", "cuda"], ["cuda"]),
    ("run-budget-without-tuning", lambda s: ["run", s.artifact, "--tokens", "1", "--tuning-budget", "5"],
     ["--tuning-budget needs --tuning on"]),
    # generate
    ("generate-missing-artifact", lambda s: ["generate", s.path("nope"), "--prompt", "Hi"], ["not a folder"]),
    ("generate-zero-max-tokens", lambda s: ["generate", s.artifact, "--prompt", "Hi", "--max-tokens", "0"], ["--max-tokens"]),
    ("generate-top-p-zero", lambda s: ["generate", s.artifact, "--prompt", "Hi", "--top-p", "0"], ["--top-p"]),
    ("generate-negative-temperature", lambda s: ["generate", s.artifact, "--prompt", "Hi", "--temperature", "-1"],
     ["--temperature"]),
    ("generate-threads-with-webgpu", lambda s: ["generate", s.artifact, "--prompt", "Hi", "--threads", "2"], ["--threads 2"]),
    ("generate-no-prompt", lambda s: ["generate", s.artifact], ["--prompt"]),
    # tune
    ("tune-missing-artifact", lambda s: ["tune", s.path("nope")], ["not a folder"]),
    ("tune-db-out-in-missing-folder", lambda s: ["tune", s.artifact, "--db-out", s.path("no/such/db.json")], ["--db-out"]),
    ("tune-negative-budget", lambda s: ["tune", s.artifact, "--budget", "-1"], ["--budget"]),
    ("tune-unknown-device", lambda s: ["tune", s.artifact, "--device", "cpu"], ["cpu"]),
    # bench
    ("bench-unknown-device", lambda s: ["bench", s.path("r"), "--device", "cuda"], ["--device 'cuda'"]),
    ("bench-zero-threads", lambda s: ["bench", s.path("r"), "--threads", "0"], ["--threads '0'"]),
    ("bench-unknown-model", lambda s: ["bench", s.path("r"), "--models", "gpt5"], ["unknown model gpt5"]),
    ("bench-unwritable-report", lambda s: ["bench", s.locked() + "/r", "--models", "llama-h64-l2"], ["cannot write", "locked"]),
    # serve
    ("serve-missing-folder", lambda s: ["serve", s.path("nope"), "--port", "0"], ["is not a folder"]),
    ("serve-port-taken", lambda s: ["serve", s.folder_with_notes(), "--port", s.taken_port()], ["--port 0"]),
    ("serve-port-out-of-range", lambda s: ["serve", s.folder_with_notes(), "--port", "70000"], ["--port"]),
    # build-site
    ("build-site-no-artifacts", lambda s: ["build-site", "-o", s.path("site")], ["Missing argument"]),
    ("build-site-not-an-artifact", lambda s: ["build-site", s.folder_with_notes(), "-o", s.path("site")], ["no manifest.json"]),
    ("build-site-output-is-file", lambda s: ["build-site", s.artifact, "-o", s.file()], ["is a file"]),
    ("build-site-output-not-a-site", lambda s: ["build-site", s.artifact, "-o", s.folder_with_notes()], ["not empty"]),
    ("build-site-output-unwritable", lambda s: ["build-site", s.artifact, "-o", s.locked() + "/site"], ["cannot write"]),
    # demo: refused before the default model is compiled
    ("demo-output-is-file", lambda s: ["demo", "-o", s.file()], ["is a file"]),
    ("demo-output-not-a-site", lambda s: ["demo", "-o", s.folder_with_notes()], ["not empty"]),
    ("demo-not-an-artifact", lambda s: ["demo", s.folder_with_notes("x"), "-o", s.path("site"), "--check"], ["no manifest.json"]),
    ("demo-port-taken", lambda s: ["demo", s.artifact, "-o", s.path("site"), "--port", s.taken_port()], ["--port 0"]),
    ("demo-zero-max-tokens", lambda s: ["demo", "--check", "--max-tokens", "0", "-o", s.path("site")], ["--max-tokens"]),
]
FAST = {"compile-output-is-file", "compile-negative-layers", "compile-tokenizer-not-json"}


@pytest.fixture(scope="module")
def good_model(tmp_path_factory) -> Path:
    return make_hf_model(tmp_path_factory.mktemp("hf") / "m", "llama", num_hidden_layers=1)


@pytest.mark.parametrize("name, args, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, args, fragments, good_model, llama_artifact, tmp_path):
    scratch_dir, tmp = tmp_path / "scratch", tmp_path / "tmp"
    scratch_dir.mkdir()
    tmp.mkdir()
    with ExitStack() as stack:
        scratch = Scratch(scratch_dir, good_model, llama_artifact, stack)
        argv = args(scratch)
        before, artifact_before = snapshot(scratch_dir), snapshot(llama_artifact)
        t0 = time.perf_counter()
        result = webrt(*argv, env={**os.environ, "TMPDIR": str(tmp)}, cwd=scratch_dir)
        seconds = time.perf_counter() - t0
        assert_one_line_error(result, *fragments)
        assert snapshot(scratch_dir) == before, "the command changed files it was not asked to write"
        assert snapshot(llama_artifact) == artifact_before
        assert list(tmp.iterdir()) == [], "the command left temporary files behind"
    if name in FAST:
        assert seconds < 5, f"{name} took {seconds:.1f}s to refuse"


def test_suite_size():
    """The issue's floor: at least 40 cases, across every verb."""
    assert len(CASES) >= 40
    verbs = {name.removeprefix("build-site").split("-")[0] or "build-site" for name, _, _ in CASES}
    assert verbs == {"compile", "run", "generate", "tune", "bench", "serve", "build-site", "demo"}


def test_good_tokenizer_files_pass(tmp_path):
    """The checks refuse only what is wrong: a valid tokenizer and template render the sample chat."""
    from webrt.tokenizer_checks import check_tokenizer_files, render_chat_template

    (tmp_path / "tokenizer.json").write_text(word_tokenizer_json())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    check_tokenizer_files(sorted(tmp_path.iterdir()), vocab_size=4)
    prompt = render_chat_template(TOKENIZER_CONFIG["chat_template"], TOKENIZER_CONFIG, tmp_path / "t")
    assert prompt == "user: What is the capital of France?\nassistant: Paris.\nuser: And of Italy?\n"


NATIVE_STDERR_PROGRAM = """
import os, sys
from webrt.native_output import captured_native_stderr
with captured_native_stderr() as native:
    os.write(2, b"Warning: Set native vector bits to be 128 for wasm32\\n")  # as C++ does, below Python
    print("progress line", file=sys.stderr)
print("held back: " + native.text.strip(), file=sys.stderr)
"""


def test_native_stderr_is_held_back():
    result = subprocess.run([sys.executable, "-c", NATIVE_STDERR_PROGRAM], capture_output=True, text=True, timeout=60)
    assert result.stderr.splitlines() == ["progress line", "held back: Warning: Set native vector bits to be 128 for wasm32"]
