"""OpenAI logprobs / top_logprobs, computed on the device (webrt/models/sampling.py: top_logprobs),
against log_softmax of transformers' logits on the same random model, on both backends; and
logit_bias other than -100, added on the device. One page per backend runs every request."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.models import make_tiny_chat_model, reference_logits
from webrt.browser import shell_page

TOLERANCE = 1e-4

# calls: [kind, request]; returns per call {prompt ids, the reply (or the streamed chunks)}
DRIVER_JS = """
async ([url, device, calls]) => {
  const engine = await window.webrt.createEngine(url, { device });
  const results = [];
  for (const [kind, request] of calls) {
    const t = engine.tokenizer;
    const prompt = kind === "chat" ? t.encode(t.applyChatTemplate(request.messages)) : t.encodePrompt(request.prompt);
    const api = kind === "chat" ? engine.chat.completions : engine.completions;
    try {
      if (request.stream) {
        const chunks = [];
        for await (const chunk of await api.create(request)) chunks.push(chunk);
        results.push({ prompt, chunks });
      } else {
        results.push({ prompt, reply: await api.create(request) });
      }
    } catch (err) {
      results.push({ error: `${err.name}: ${err.message}` });
    }
  }
  const device_used = engine.info.device;
  engine.unload();
  return { results, device_used };
}
"""

CHAT = {"messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 5, "temperature": 0}
TEXT = {"prompt": "a b c d", "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def tiny_chat_folder(tmp_path_factory):
    """The tiny chat model's checkpoint again (make_hf_model seeds torch, so the same weights)."""
    return make_tiny_chat_model(tmp_path_factory.mktemp("hf") / "tiny-chat")


def reference_logprobs(folder, prompt, generated, bias=None):
    """log_softmax (float64) of transformers' logits at each generated token's position."""
    logits = reference_logits(folder, prompt + generated).astype(np.float64)[len(prompt) - 1:len(prompt) - 1 + len(generated)]
    for token, value in (bias or {}).items():
        logits[:, int(token)] += value
    return torch.log_softmax(torch.from_numpy(logits), dim=-1).numpy()


def max_error(ref, generated, chosen, top):
    """chosen: the generated tokens' logprobs; top: per token the alternatives' logprobs, in the
    device's order. They must be the reference's k largest in order (values at each rank, so a tie
    between two ids cannot matter). Returns the max abs error over both."""
    assert len(chosen) == len(generated) == len(top) and len(generated) > 0
    error = 0.0
    for i, token in enumerate(generated):
        error = max(error, abs(chosen[i] - ref[i, token]))
        best = np.sort(ref[i])[::-1][:len(top[i])]
        error = max(error, *np.abs(np.array(top[i]) - best)) if len(top[i]) else error
    return error


def chat_logprobs(reply):
    content = reply["choices"][0]["logprobs"]["content"]
    return content, [e["logprob"] for e in content], [[t["logprob"] for t in e["top_logprobs"]] for e in content]


def test_kernels_fit_webgpus_default_storage_buffer_limit(tiny_chat_artifact):
    """The top-logprobs kernels, like every other, bind at most 8 storage buffers: WebGPU's default
    maxStorageBuffersPerShaderStage, all that many phones allow (the shell refuses an artifact
    needing more than the adapter has)."""
    manifest = json.loads((tiny_chat_artifact / "manifest.json").read_text())
    assert manifest["device"]["requires"]["maxStorageBuffersPerShaderStage"] <= 8, manifest["device"]


@pytest.mark.parametrize("device", ["wasm", "webgpu"])
def test_logprobs_match_log_softmax_of_the_reference(tiny_chat_artifact, tiny_chat_folder, device):
    bias = {"100": 3.5, "200": -2.0}
    calls = [
        ("chat", {**CHAT, "logprobs": True, "top_logprobs": 5}),
        ("chat", {**CHAT, "logprobs": True, "top_logprobs": 20, "stream": True}),
        ("text", {**TEXT, "logprobs": 3}),
        ("text", {**TEXT, "logprobs": 3, "stream": True}),
        # a host draw (top_p) after an on-device logit bias: logprobs of the distribution drawn from, at T = 1
        ("chat", {**CHAT, "temperature": 0.9, "top_p": 0.9, "seed": 5, "logprobs": True, "top_logprobs": 4,
                  "logit_bias": bias}),
        ("chat", {**CHAT, "logprobs": True}),  # logprobs without alternatives
        ("chat", CHAT),  # off: no logprobs field
    ]
    with shell_page(tiny_chat_artifact) as (page, url):
        out = page.evaluate(DRIVER_JS, [url, device, calls])
    assert out["device_used"] == device
    assert not [r["error"] for r in out["results"] if "error" in r]
    chat, chat_stream, text, text_stream, biased, bare, off = out["results"]
    errors = {}

    # chat, not streamed: entries with the token's text and UTF-8 bytes
    generated = chat["reply"]["usage"]["extra"]["token_ids"]
    ref = reference_logprobs(tiny_chat_folder, chat["prompt"], generated)
    content, chosen, top = chat_logprobs(chat["reply"])
    assert [len(t) for t in top] == [5] * len(generated)
    errors["chat"] = max_error(ref, generated, chosen, top)
    assert "".join(e["token"] for e in content) == chat["reply"]["choices"][0]["message"]["content"]
    assert all(bytes(e["bytes"]).decode() == e["token"] for e in content)

    # chat, streamed: the entries ride on the chunks, one per generated token (the same greedy tokens)
    content = [e for c in chat_stream["chunks"] if c["choices"] for e in (c["choices"][0].get("logprobs") or {}).get("content", [])]
    top = [[t["logprob"] for t in e["top_logprobs"]] for e in content]
    assert [len(t) for t in top] == [20] * len(generated)
    errors["chat stream"] = max_error(ref, generated, [e["logprob"] for e in content], top)

    # completions: OpenAI's legacy shape, not streamed and streamed
    generated = text["reply"]["usage"]["extra"]["token_ids"]
    ref = reference_logprobs(tiny_chat_folder, text["prompt"], generated)
    lp = text["reply"]["choices"][0]["logprobs"]
    top = [sorted(alts.values(), reverse=True) for alts in lp["top_logprobs"]]  # keyed by text: equal texts merge
    errors["text"] = max_error(ref, generated, lp["token_logprobs"], top)
    assert "".join(lp["tokens"]) == text["reply"]["choices"][0]["text"]
    assert lp["text_offset"] == list(np.cumsum([0] + [len(t) for t in lp["tokens"]])[:-1])
    pieces = [c["choices"][0]["logprobs"] for c in text_stream["chunks"] if c["choices"][0].get("logprobs")]
    assert [t for p in pieces for t in p["tokens"]] == lp["tokens"], (pieces, lp, errors)
    assert [o for p in pieces for o in p["text_offset"]] == lp["text_offset"]
    np.testing.assert_allclose([x for p in pieces for x in p["token_logprobs"]], lp["token_logprobs"], atol=TOLERANCE, err_msg=str((errors, [ref[i, t] for i, t in enumerate(generated)], lp["top_logprobs"])))

    # the top-p draw with the bias: token 100 (+3.5) leads every step's alternatives
    generated = biased["reply"]["usage"]["extra"]["token_ids"]
    ref = reference_logprobs(tiny_chat_folder, biased["prompt"], generated, bias)
    content, chosen, top = chat_logprobs(biased["reply"])
    errors["top_p + logit_bias"] = max_error(ref, generated, chosen, top)
    assert all(np.argmax(ref[i]) == 100 for i in range(len(generated)))

    assert all(e["top_logprobs"] == [] for e in bare["reply"]["choices"][0]["logprobs"]["content"])
    assert "logprobs" not in off["reply"]["choices"][0]
    print(f"{device}: max abs error against transformers' log_softmax: {errors}")
    assert max(errors.values()) < TOLERANCE, errors
