"""Token generation through prefill/decode with the KV cache, on-device sampling and q4f32 weights,
against transformers on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from tests.models import make_hf_model
from tests.test_parity import BACKEND_IDS, BACKENDS
from webrt.browser import run_forward, shell_page
from webrt.build_artifact import compile_model
from webrt.quantize import quantize_q4

PROMPT = [5, 17, 300, 1000, 42, 7, 99, 1234, 2000, 3, 64, 1500]

GENERATE_JS = """
async ([url, runs, device, threads]) => {
  const model = await window.webrt.loadModel(url, { device, threads: threads ?? undefined });
  const gen = new window.webrt.Generator(model);
  async function generate(prompt, n, sampling) {
    const sampler = new window.webrt.Sampler(sampling, prompt);
    let { token, reused } = await gen.prefill(prompt, sampler);
    const tokens = [token];
    while (tokens.length < n) {
      sampler.accept(token);
      token = await gen.decode(token, sampler);
      tokens.push(token);
    }
    return { tokens, reused };
  }
  const out = [];
  for (const { prompt, n, sampling, chunk, nextTurn } of runs) {
    gen.prefillChunk = chunk;
    gen.reset();
    const first = await generate(prompt, n, sampling);
    // a second turn: the first turn's prompt and reply, then new tokens; only those are prefilled
    const second = nextTurn ? await generate([...prompt, ...first.tokens.slice(0, -1), ...nextTurn], n, sampling) : null;
    out.push({ tokens: first.tokens, second });
  }
  model.unload();
  return out;
}
"""


def generate(artifact, runs, device="webgpu", threads=None):
    with shell_page(artifact) as (page, url):
        return page.evaluate(GENERATE_JS, [url, runs, device, threads])


def hf_greedy(folder, prompt, n):
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    return reference.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=n,
                              pad_token_id=0)[0, len(prompt):].tolist()


@pytest.mark.parametrize("device, threads", BACKENDS, ids=BACKEND_IDS)
def test_greedy_tokens_match_transformers_across_chunks_and_turns(llama_dir, llama_artifact, device, threads):
    n, turn = 32, [77, 1888, 5]
    expected = hf_greedy(llama_dir, PROMPT, n)
    greedy = {"temperature": 0}
    whole, chunked = generate(llama_artifact, [
        {"prompt": PROMPT, "n": n, "sampling": greedy, "chunk": 128, "nextTurn": turn},
        {"prompt": PROMPT, "n": n, "sampling": greedy, "chunk": 5, "nextTurn": turn},
    ], device, threads)
    assert whole["tokens"] == expected
    assert chunked["tokens"] == expected  # prompt fed in chunks of 5: boundaries at 5 and 10
    second_prompt = PROMPT + expected[:-1] + turn
    expected_second = hf_greedy(llama_dir, second_prompt, n)
    for run in (whole, chunked):
        assert run["second"]["reused"] == len(PROMPT) + n - 1  # the whole first turn came from the cache
        assert run["second"]["tokens"] == expected_second


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
    artifact = compile_model(folder, tmp_path / "q4", "q4f32", tuning_candidates=False)
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


EMPTY_LISTS_JS = """
async ([url, device, threads]) => {
  const model = await window.webrt.loadModel(url, { device, threads: threads ?? undefined });
  const vocab = model.manifest.model.config.vocab_size;
  const lists = (n) => ({
    penalty_ids: { data: new Int32Array(n), shape: [n] }, penalty_counts: { data: new Float32Array(n), shape: [n] },
    bias_ids: { data: new Int32Array(n), shape: [n] }, bias_values: { data: new Float32Array(n), shape: [n] } });
  const inputs = (ids, offset, n) => ({
    input_ids: { data: Int32Array.from(ids), shape: [1, ids.length] }, offset: { values: [offset] },
    token_mask: { data: window.webrt.allowAllMask(vocab), shape: [Math.ceil(vocab / 32)] },
    sampling: { data: Float32Array.of(0, 1, 0, 0), shape: [4] }, seed: { values: [1] }, logprobs: { values: [0] },
    ...lists(n) });
  const logits = [];
  for (const n of [0, 1]) {  // no entries, and one entry that changes nothing (token 0, bias 0, count 0)
    let [token, row] = await model.run("prefill", inputs([5, 17, 300, 42, 7, 9], 0, n), { readback: [0, 1] });
    const rows = [Array.from(row.data)];
    for (let step = 0; step < 3; step++) {
      [token, row] = await model.run("decode", inputs([token.data[0]], 6 + step, n), { readback: [0, 1] });
      rows.push(Array.from(row.data));
    }
    logits.push(rows);
  }
  model.unload();
  return logits;
}
"""


@pytest.mark.parametrize("device, threads", BACKENDS, ids=BACKEND_IDS)
def test_no_bias_and_no_penalized_tokens_give_the_plain_logits(llama_artifact, device, threads):
    """Zero-length bias and penalty lists: their lookups reduce over no ids, and TVM's reduction
    init sits in the first iteration, so the output kept stale memory (wasm decode's logits were
    off by up to 20) until webrt/models/sampling.py's lookup_sum ran one extra, empty position."""
    with shell_page(llama_artifact) as (page, url):
        empty, one = page.evaluate(EMPTY_LISTS_JS, [url, device, threads])
    np.testing.assert_allclose(np.array(empty), np.array(one), atol=1e-6)


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
