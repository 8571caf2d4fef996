"""The default model (SmolLM2-135M-Instruct, Q4_1 GGUF compiled as q4f32 with its blocks kept)
against transformers loading the same GGUF (which dequantizes to float32): greedy tokens of three
chat prompts on wasm with 1 and 2 threads, and the first one's 8-token reply on WebGPU (SwiftShader takes
about 5 s a token here; bench/default_model_greedy.py runs all three prompts on every backend, with its results
committed). A divergence must sit on a near-tie of the reference's top two logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models import default_model_greedy_reference
from tests.test_parity import BACKEND_IDS, BACKENDS
from webrt.browser import shell_page

PROMPTS = ["What is the capital of France?", "Name three colors.", "Write one sentence about the sea."]
NEW_TOKENS = 16
NEAR_TIE = 0.01  # top-2 logit margin under which float rounding may pick either token

GREEDY_JS = """
async ([url, prompts, n, device, threads]) => {
  const model = await window.webrt.loadModel(url, { device, threads: threads ?? undefined });
  const gen = new window.webrt.Generator(model);
  const out = [];
  for (const prompt of prompts) {
    gen.reset();
    const sampler = new window.webrt.Sampler({ temperature: 0 }, prompt);
    let { token } = await gen.prefill(prompt, sampler);
    const tokens = [token];
    while (tokens.length < n) tokens.push(token = await gen.decode(token, sampler));
    out.push(tokens);
  }
  model.unload();
  return out;
}
"""


@pytest.fixture(scope="module")
def reference():
    """transformers on the same GGUF: (tokenizer, model, chat prompt ids, greedy continuations)."""
    return default_model_greedy_reference(PROMPTS, NEW_TOKENS)


def greedy_divergences(artifact, reference, device: str, threads: int | None, count: int,
                       new_tokens: int = NEW_TOKENS) -> tuple[list, list]:
    """webrt's first `new_tokens` greedy tokens for the first `count` prompts, and per prompt None
    (equal to the reference) or (first differing index, the reference's top-2 logit margin there)."""
    tokenizer, model, prompts, refs = reference
    with shell_page(artifact) as (page, url):
        ours = page.evaluate(GREEDY_JS, [url, prompts[:count], new_tokens, device, threads])
    divergences = []
    for prompt, tokens, ref in zip(prompts, ours, refs):
        n = min(len(ref), len(tokens))
        first_diff = next((i for i in range(n) if ref[i] != tokens[i]), None)
        if first_diff is None:
            divergences.append(None)
            continue
        with torch.no_grad():
            logits = model(torch.tensor([prompt + ref[:first_diff]])).logits[0, -1].numpy()
        top2 = np.sort(logits)[-2:]
        divergences.append((first_diff, float(top2[1] - top2[0])))
    return ours, divergences


@pytest.mark.parametrize("device, threads", BACKENDS, ids=BACKEND_IDS)
def test_greedy_tokens_match_transformers_on_the_gguf(default_artifact, reference, device, threads):
    # SwiftShader: one prompt, and its reply's 8 tokens ("The capital of France is Paris.<|im_end|>")
    count, new_tokens = (1, 8) if device == "webgpu" else (len(PROMPTS), NEW_TOKENS)
    ours, divergences = greedy_divergences(default_artifact, reference, device, threads, count, new_tokens)
    assert len(ours) == count
    for text, divergence in zip(PROMPTS, divergences):
        if divergence is not None:
            first_diff, margin = divergence
            print(f"{text!r}: diverges at token {first_diff}, reference top-2 margin {margin:.2e}")
            assert margin < NEAR_TIE, f"{text!r}: diverges at {first_diff} without a near-tie (margin {margin})"
    assert "Paris" in reference[0].decode(ours[0])
