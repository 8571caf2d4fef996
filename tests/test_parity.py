"""Logits from the compiled WebGPU kernels and the wasm kernels (1 and 2 threads) in headless Chromium
against transformers on the same weights."""

from __future__ import annotations

import numpy as np
import pytest

from webrt.browser import run_forward
from webrt.build_artifact import compile_model

from tests.models import make_hf_model, reference_logits

SEQ_LENS = (1, 7, 64)


def token_lists(vocab: int) -> list[list[int]]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, vocab, size=n).tolist() for n in SEQ_LENS]


# (device, wasm threads): every parity check runs on WebGPU and on wasm with 1 and 2 threads
BACKENDS = [("webgpu", None), ("wasm", 1), ("wasm", 2)]
BACKEND_IDS = ["webgpu", "wasm-1thread", "wasm-2threads"]


def assert_matches_reference(folder, artifact, lists, device="webgpu", threads=None):
    result = run_forward(artifact, lists, device, threads)
    assert result["device"] == device
    if device == "wasm":
        assert result["threads"] == threads, result["threads_reason"]
    for tokens, run in zip(lists, result["results"]):
        ours = np.array(run["logits"], dtype=np.float32)
        ref = reference_logits(folder, tokens)
        assert ours.shape == ref.shape
        err = np.abs(ours - ref).max()
        assert err <= 1e-3 * np.abs(ref).max(), f"seq {len(tokens)}: max abs error {err}"
        assert (ours.argmax(-1) == ref.argmax(-1)).all(), f"seq {len(tokens)}: argmax differs"


@pytest.mark.parametrize("device, threads", BACKENDS, ids=BACKEND_IDS)
def test_llama_gqa_untied_matches_transformers(llama_dir, llama_artifact, device, threads):
    assert_matches_reference(llama_dir, llama_artifact, token_lists(2048), device, threads)


@pytest.mark.parametrize("device, threads", BACKENDS, ids=BACKEND_IDS)
def test_qwen2_bias_tied_matches_transformers(qwen2_dir, qwen2_artifact, device, threads):
    assert_matches_reference(qwen2_dir, qwen2_artifact, token_lists(2048), device, threads)


@pytest.mark.parametrize("arch, overrides", [
    ("mistral", {}),
    ("llama", {"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                          "original_max_position_embeddings": 64}}),
    ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}, "num_key_value_heads": 4,
               "head_dim": 32, "tie_word_embeddings": True}),
])
def test_other_variants_match_transformers(tmp_path, arch, overrides):
    folder = make_hf_model(tmp_path / "hf", arch, num_hidden_layers=2, **overrides)
    artifact = compile_model(folder, tmp_path / "artifact", tuning_candidates=False)
    for device, threads in BACKENDS:
        assert_matches_reference(folder, artifact, [token_lists(2048)[1]], device, threads)
