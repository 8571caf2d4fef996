"""The JS shell in Deno, on a second WebGPU implementation (wgpu, over Mesa's lavapipe where there is
no GPU; webrt/deno_driver.py sets VK_ICD_FILENAMES to it): the Chromium parity checks with the same
bounds (random LLaMA and Qwen2 logits against transformers, 32 greedy tokens across prefill chunks
and turns), wasm with 2 threads, file:// and http:// artifact URLs, and the default model's answer
through createEngine."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models import reference_logits
from tests.test_generation import GENERATE_JS, PROMPT, hf_greedy
from tests.test_parity import token_lists
from webrt.deno_driver import artifact_url, run_chat, run_forward, run_script


def assert_matches_reference(folder, artifact, lists, device="webgpu", threads=None, over="file"):
    """As tests/test_parity.py: max abs error within 1e-3 of the logits' range, argmax equal."""
    result = run_forward(artifact, lists, device, threads, over=over)
    assert result["device"] == device
    if device == "webgpu":
        assert "llvmpipe" in result["adapter"]["description"], result["adapter"]  # lavapipe, not another driver
        assert result["adapter"]["shaderF16"] is True  # the device was created with shader-f16
    else:
        assert result["threads"] == threads, result["threads_reason"]
    for tokens, run in zip(lists, result["results"]):
        ours = np.array(run["logits"], dtype=np.float32)
        ref = reference_logits(folder, tokens)
        err = np.abs(ours - ref).max()
        print(f"{device} seq {len(tokens)}: max abs error {err:.2e} (logits up to {np.abs(ref).max():.2f})")
        assert err <= 1e-3 * np.abs(ref).max(), f"seq {len(tokens)}: max abs error {err}"
        assert (ours.argmax(-1) == ref.argmax(-1)).all(), f"seq {len(tokens)}: argmax differs"


def test_llama_logits_match_transformers_on_wgpu(llama_dir, llama_artifact):
    assert_matches_reference(llama_dir, llama_artifact, token_lists(2048))


def test_qwen2_logits_match_transformers_on_wgpu_over_http(qwen2_dir, qwen2_artifact):
    assert_matches_reference(qwen2_dir, qwen2_artifact, token_lists(2048), over="http")


def test_wasm_two_threads_in_deno(llama_dir, llama_artifact):
    assert_matches_reference(llama_dir, llama_artifact, [token_lists(2048)[1]], "wasm", 2)


def test_greedy_tokens_across_chunks_and_turns_on_wgpu(llama_dir, llama_artifact):
    n, turn = 32, [77, 1888, 5]
    expected = hf_greedy(llama_dir, PROMPT, n)
    greedy = {"temperature": 0}
    with artifact_url(llama_artifact) as url:
        whole, chunked = run_script(GENERATE_JS, [url, [
            {"prompt": PROMPT, "n": n, "sampling": greedy, "chunk": 128, "nextTurn": turn},
            {"prompt": PROMPT, "n": n, "sampling": greedy, "chunk": 5, "nextTurn": turn},
        ], "webgpu", None])
    assert whole["tokens"] == expected
    assert chunked["tokens"] == expected  # prompt fed in chunks of 5
    expected_second = hf_greedy(llama_dir, PROMPT + expected[:-1] + turn, n)
    for run in (whole, chunked):
        assert run["second"]["reused"] == len(PROMPT) + n - 1  # the whole first turn came from the cache
        assert run["second"]["tokens"] == expected_second


def test_default_model_answers_paris_through_create_engine(default_artifact):
    deltas = []
    reply = run_chat(default_artifact, {"messages": [{"role": "user", "content": "What is the capital of France?"}],
                                        "max_tokens": 16, "temperature": 0}, deltas.append, "webgpu")
    print(reply["text"], reply["decode_tokens_per_s"])
    assert reply["device"] == "webgpu"
    assert "Paris" in reply["text"]
    assert "".join(deltas) == reply["text"]  # streamed as it was generated


@pytest.mark.parametrize("url", ["file:///nonexistent/artifact/", "http://127.0.0.1:9/artifact/"])
def test_missing_artifact_is_a_fetch_error(url):
    with pytest.raises(Exception, match="FetchError"):
        run_script("async ([url]) => { try { await window.webrt.loadModel(url); } catch (err) { throw err; } }", [url])


def test_adapters_report_shader_f16(llama_artifact):
    """lavapipe in Deno has shader-f16 (asserted in every WebGPU check above); SwiftShader in Chromium has not."""
    from webrt.browser import run_forward as run_in_chromium

    adapter = run_in_chromium(llama_artifact, [[1, 2, 3]])["adapter"]
    assert adapter["architecture"] == "swiftshader" and adapter["shaderF16"] is False
