"""Token generation through prefill/decode with the KV cache, on-device sampling and q4f32 weights,
against transformers on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from tests.models import make_hf_model
from webrt.browser import run_forward, shell_page
from webrt.build_artifact import compile_hf
from webrt.quantize import quantize_q4

PROMPT = [5, 17, 300, 1000, 42, 7, 99, 1234, 2000, 3, 64, 1500]

GENERATE_JS = """
async ([url, runs]) => {
  const model = await window.webrt.loadModel(url);
  const out = [];
  for (const { prompt, n, sampling, chunk } of runs) {
    const gen = new window.webrt.Generator(model, { prefillChunk: chunk });
    const sampler = new window.webrt.Sampler(sampling, prompt);
    let { token } = await gen.prefill(prompt, sampler);
    const tokens = [token];
    while (tokens.length < n) {
      sampler.accept(token);
      token = await gen.decode(token, sampler);
      tokens.push(token);
    }
    // a second turn that starts with the first: only the new tokens are prefilled
    const next = [...prompt, ...tokens.slice(0, 4)];
    const again = await gen.prefill(next, new window.webrt.Sampler(sampling, next));
    out.push({ tokens, reused: again.reused, after: again.token });
  }
  model.unload();
  return out;
}
"""


def generate(artifact, runs):
    with shell_page(artifact) as (page, url):
        return page.evaluate(GENERATE_JS, [url, runs])


def test_greedy_tokens_match_transformers_with_chunked_prefill_and_prefix_reuse(llama_dir, llama_artifact):
    reference = transformers.AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    expected = reference.generate(torch.tensor([PROMPT]), do_sample=False, max_new_tokens=16,
                                  pad_token_id=0)[0, len(PROMPT):].tolist()
    greedy = {"temperature": 0}
    whole, chunked = generate(llama_artifact, [{"prompt": PROMPT, "n": 16, "sampling": greedy, "chunk": 128},
                                               {"prompt": PROMPT, "n": 16, "sampling": greedy, "chunk": 5}])
    assert whole["tokens"] == expected
    assert chunked["tokens"] == expected
    assert whole["reused"] == len(PROMPT) + 3  # the last token runs again to give logits
    assert whole["after"] == expected[4]


def test_seeded_sampling_is_reproducible_and_penalties_apply(llama_artifact):
    def sampled(seed, **extra):
        return {"prompt": PROMPT, "n": 12, "chunk": 128, "sampling": {"temperature": 1.0, "seed": seed, **extra}}

    runs = generate(llama_artifact, [sampled(7), sampled(7), sampled(8), sampled(7, top_p=0.9, top_k=40),
                                     sampled(7, top_p=0.9, top_k=40),
                                     {"prompt": PROMPT, "n": 12, "chunk": 128,
                                      "sampling": {"temperature": 0, "presence_penalty": 100.0}}])
    a, b, c, top_a, top_b, penalized = (r["tokens"] for r in runs)
    assert a == b and top_a == top_b
    assert a != c
    assert len(set(penalized)) == len(penalized), "a huge presence penalty forbids repeats"


def test_q4f32_matches_transformers_on_the_same_quantized_weights(tmp_path):
    folder = make_hf_model(tmp_path / "hf", "llama", num_hidden_layers=2)
    artifact = compile_hf(folder, tmp_path / "q4", "q4f32")
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():  # the reference holds exactly the weights the artifact encodes
        for name, param in model.named_parameters():
            if param.ndim == 2:
                param.copy_(torch.from_numpy(quantize_q4(param.numpy()).dequantize()))
        tokens = PROMPT[:7]
        ref = model(torch.tensor([tokens])).logits[0].numpy()
    ours = np.array(run_forward(artifact, [tokens])["results"][0]["logits"])
    assert np.abs(ours - ref).max() <= 1e-3 * np.abs(ref).max()
    assert (ours.argmax(-1) == ref.argmax(-1)).all()
    assert sum(f.stat().st_size for f in (artifact / "weights").iterdir()) < \
        0.3 * sum(p.numel() * 4 for p in model.parameters())


@pytest.mark.parametrize("bad, message", [
    ({"temperature": -1}, "temperature must be >= 0"),
    ({"top_p": 0}, "top_p must be in (0, 1]"),
])
def test_bad_sampling_settings_are_refused(llama_artifact, bad, message):
    js = """async ([url, sampling]) => {
      try { new window.webrt.Sampler(sampling, []); return "accepted"; }
      catch (err) { return `${err.name}: ${err.message}`; }
    }"""
    with shell_page(llama_artifact) as (page, url):
        assert page.evaluate(js, [url, bad]) == f"InputError: {message}, got {list(bad.values())[0]}"
