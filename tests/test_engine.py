"""The chat engine: tokenizer and template against Hugging Face, the OpenAI-shaped API, context
policy, stop strings, interrupt, the Worker, and the default model answering in the browser."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from webrt.browser import shell_page

CORPUS = [
    "Hello, world!",
    "  leading and trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nand   runs     of spaces",
    "Unicode: naïve café, Ærøskøbing, 北京欢迎你, русский текст, العربية",
    "Emoji: 🤗🚀 👩‍👩‍👧‍👦 🇫🇷 ✨",
    "Numbers 3.14159 and 1234567890, code: def f(x): return x**2  # ok",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "special tokens glued<|im_end|>to text<|endoftext|>",
    "",
]

ENCODE_JS = """
async ([url, texts, messages]) => {
  const model = await window.webrt.loadModel(url);
  const tokenizer = await window.webrt.ChatTokenizer.load(model.base, model.manifest);
  model.unload();
  return { ids: texts.map((t) => tokenizer.encode(t)), prompt: tokenizer.applyChatTemplate(messages),
           decoded: tokenizer.decode(tokenizer.encode(texts[3])) };
}
"""

ENGINE_JS = """
async ([url, options, calls]) => {
  const engine = await window.webrt.createEngine(url, options);
  const results = [];
  for (const [method, request] of calls) {
    try {
      const api = method === "chat" ? engine.chat.completions : engine.completions;
      if (request.stream) {
        const chunks = [];
        for await (const chunk of await api.create(request)) {
          chunks.push(chunk);
          if (request.interruptAfter && chunks.length === request.interruptAfter) engine.interrupt();
        }
        results.push({ chunks });
      } else {
        results.push(await api.create(request));
      }
    } catch (err) {
      results.push({ error: `${err.name}: ${err.message}` });
    }
  }
  engine.unload();
  return results;
}
"""


def run_engine(artifact, calls, options=None):
    with shell_page(artifact) as (page, url):
        return page.evaluate(ENGINE_JS, [url, options or {}, calls])


def test_tokenizer_and_template_match_hugging_face(tiny_chat_artifact):
    import transformers

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi 👋 there"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "What is 2+2?"}]
    with shell_page(tiny_chat_artifact) as (page, url):
        ours = page.evaluate(ENCODE_JS, [url, CORPUS, messages])
    reference = Tokenizer.from_file(str(tiny_chat_artifact / "tokenizer.json"))
    for text, ids in zip(CORPUS, ours["ids"]):
        assert ids == reference.encode(text, add_special_tokens=False).ids, text
    hf = transformers.AutoTokenizer.from_pretrained(tiny_chat_artifact)
    assert ours["prompt"] == hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours["decoded"] == CORPUS[3]


def user(text):
    return [{"role": "user", "content": text}]


def test_openai_shaped_responses_usage_and_streaming(tiny_chat_artifact):
    plain, streamed, text = run_engine(tiny_chat_artifact, [
        ("chat", {"messages": user("Hi"), "max_tokens": 5, "temperature": 0}),
        ("chat", {"messages": user("Hi"), "max_tokens": 5, "temperature": 0, "stream": True}),
        ("text", {"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0}),
    ])
    assert plain["object"] == "chat.completion"
    assert plain["choices"][0]["message"]["role"] == "assistant"
    assert plain["usage"]["completion_tokens"] <= 5
    assert plain["usage"]["prompt_tokens"] > 0
    assert plain["usage"]["extra"]["time_to_first_token_ms"] > 0
    chunks = streamed["chunks"]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == \
        plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]
    assert streamed["chunks"][-1]["usage"]["extra"]["prefix_reused_tokens"] > 0  # same prompt again
    assert text["object"] == "text_completion" and text["usage"]["completion_tokens"] == 4


def test_context_overflow_errors_or_slides(tiny_chat_artifact):
    long_history = []
    for i in range(6):
        long_history += [{"role": "user", "content": f"Tell me fact number {i} about the sea."},
                         {"role": "assistant", "content": f"Fact {i}: the sea is large and salty."}]
    request = {"messages": long_history + user("And one more?"), "max_tokens": 8, "temperature": 0}
    (refused,) = run_engine(tiny_chat_artifact, [("chat", request)])
    assert refused["error"].startswith("ContextWindowError: prompt tokens (")
    assert "exceed the context window of 96" in refused["error"]
    (slid,) = run_engine(tiny_chat_artifact, [("chat", request)], {"context_policy": "sliding"})
    assert slid["usage"]["prompt_tokens"] + 8 <= 96
    assert slid["choices"][0]["finish_reason"] in ("stop", "length")


def test_stop_strings_max_tokens_interrupt_and_bad_requests(tiny_chat_artifact):
    free, = run_engine(tiny_chat_artifact, [("text", {"prompt": "a b c", "max_tokens": 12, "temperature": 0})])
    text = free["choices"][0]["text"]
    assert free["usage"]["completion_tokens"] == 12 and free["choices"][0]["finish_reason"] == "length"
    stop = text[len(text) // 2:][:3].strip() or text[-2:]
    stopped, interrupted, after, bad, zero = run_engine(tiny_chat_artifact, [
        ("text", {"prompt": "a b c", "max_tokens": 12, "temperature": 0, "stop": [stop]}),
        ("text", {"prompt": "a b c", "max_tokens": 12, "temperature": 0, "stream": True, "interruptAfter": 2}),
        ("text", {"prompt": "a b c", "max_tokens": 12, "temperature": 0}),
        ("chat", {"messages": [{"role": "robot", "content": "hi"}]}),
        ("chat", {"messages": user("hi"), "max_tokens": 0}),
    ])
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["choices"][0]["text"] == text[:text.index(stop)]
    assert interrupted["chunks"][-1]["choices"][0]["finish_reason"] == "abort"
    assert interrupted["chunks"][-1]["usage"]["completion_tokens"] < 12
    assert after["choices"][0]["text"] == text  # the engine works normally after an interrupt
    assert bad["error"].startswith("InputError: messages[0] must be")
    assert zero["error"] == "InputError: max_tokens must be a positive integer, got 0"


TURNS_JS = """
async ([url]) => {
  const engine = await window.webrt.createEngine(url, { contextPolicy: "sliding" });
  const messages = [];
  const bytes = [];
  for (let i = 0; i < 50; i++) {
    messages.push({ role: "user", content: `Turn ${i}: say something.` });
    const reply = await engine.chat.completions.create({ messages, max_tokens: 3, temperature: 0 });
    messages.push(reply.choices[0].message);
    bytes.push(reply.usage.extra.gpu_bytes);
  }
  engine.unload();
  return bytes;
}
"""


def test_fifty_chat_turns_do_not_grow_gpu_memory(tiny_chat_artifact):
    with shell_page(tiny_chat_artifact) as (page, url):
        gpu_bytes = page.evaluate(TURNS_JS, [url])
    assert len(gpu_bytes) == 50
    assert max(gpu_bytes[25:]) <= max(gpu_bytes[:25]), gpu_bytes


PROGRAMS_JS = """
async ([url, device]) => {
  const engine = await window.webrt.createEngine(url, { device });
  // the stop tokens banned, so the reply runs to max_tokens
  const logit_bias = Object.fromEntries([...engine.tokenizer.stopIds].map((id) => [id, -100]));
  const reply = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 60,
                                                       temperature: 0, logit_bias });
  const programs = engine.model.executor.programs;
  const out = { tokens: reply.usage.completion_tokens, prompt: reply.usage.prompt_tokens, prepared: programs.prepared };
  await engine.unload();
  return out;
}
"""


@pytest.mark.parametrize("device", ["wasm", "webgpu"])
def test_decoding_prepares_a_program_per_size_bucket_not_per_step(tiny_chat_artifact, device):
    """A program (storage, bind groups) is prepared per entry and power-of-two size; the sampling
    seed, new every step, is no size, so decoding prepares one program per offset bucket."""
    with shell_page(tiny_chat_artifact) as (page, url):
        out = page.evaluate(PROGRAMS_JS, [url, device])
    first, last = out["prompt"], out["prompt"] + out["tokens"]
    assert out["tokens"] >= 30, out  # enough steps that seeds of every size come up
    decode_buckets = {1 << (offset - 1).bit_length() for offset in range(first, last)}
    assert out["prepared"] <= 1 + len(decode_buckets), out  # the prefill's and one per offset bucket


WORKER_JS = """
async ([url, options]) => {
  const worker = new Worker("./worker.js", { type: "module" });
  const stages = new Set();
  const engine = await window.webrt.createWorkerEngine(worker, url, { ...options, onProgress: (p) => stages.add(p.stage) });
  const first = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 4, temperature: 0 });
  const chunks = [];
  for await (const chunk of await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 4, temperature: 0, stream: true })) chunks.push(chunk);
  let error = null;
  try { await engine.chat.completions.create({ messages: [] }); } catch (err) { error = `${err.name}: ${err.message}`; }
  await engine.unload();
  return { first, chunks, error, stages: [...stages], info: engine.info };
}
"""


AUTO_JS = """
async ([url]) => {
  const model = await window.webrt.loadModel(url, { device: "auto" });
  const info = { device: model.device, reason: model.deviceReason };
  model.unload();
  try { await window.webrt.loadModel(url, { device: "cuda" }); } catch (err) { info.error = `${err.name}: ${err.message}`; }
  return info;
}
"""


def test_auto_device_reports_its_choice(tiny_chat_artifact):
    with shell_page(tiny_chat_artifact) as (page, url):
        info = page.evaluate(AUTO_JS, [url])
    # this machine's only adapter is SwiftShader, a software renderer: auto takes the wasm kernels
    assert info["device"] == "wasm"
    assert info["reason"] == "the WebGPU adapter swiftshader is a software renderer; wasm runs faster on the CPU"
    assert info["error"] == 'InputError: device must be one of webgpu, wasm, auto, got "cuda"'


# on wasm, the engine's Worker starts the thread pool's Workers itself (nested workers)
# no device: createEngine's "auto" takes wasm beside SwiftShader's software adapter
@pytest.mark.parametrize("options", [{}, {"device": "webgpu"}, {"device": "wasm", "threads": 2}],
                         ids=["auto", "webgpu", "wasm-2threads"])
def test_engine_runs_in_a_worker_with_the_same_api(tiny_chat_artifact, options):
    with shell_page(tiny_chat_artifact) as (page, url):
        out = page.evaluate(WORKER_JS, [url, options])
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in out["chunks"])
    assert streamed == out["first"]["choices"][0]["message"]["content"]
    assert out["error"].startswith("InputError: messages must be")
    assert {"download", "pipelines"} <= set(out["stages"])
    assert out["info"]["device"] == options.get("device", "wasm"), out["info"]["device_reason"]
    if options.get("threads"):
        assert out["info"]["threads"] == options["threads"], out["info"]["threads_reason"]


def generate_json(artifact: Path, device: str, threads: int | None, max_tokens: int) -> dict:
    """`webrt generate ... --json` on the France prompt: its reply, checked for what every reply holds."""
    command = [sys.executable, "-m", "webrt.cli", "generate", str(artifact), "--prompt",
               "What is the capital of France?", "--max-tokens", str(max_tokens), "--json", "--device", device]
    if threads:
        command += ["--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    if threads:
        assert reply["threads"] == threads, reply["threads_reason"]
    assert reply["device"] == device
    assert len(reply["token_ids"]) == reply["usage"]["completion_tokens"]
    assert reply["ttft_ms"] > 0 and reply["decode_tokens_per_s"] > 0
    return reply


@pytest.mark.parametrize("threads", [1, 2], ids=["wasm-1thread", "wasm-2threads"])
def test_default_model_answers_paris_through_webrt_generate(default_artifact, threads):
    reply = generate_json(default_artifact, "wasm", threads, 16)
    assert "Paris" in reply["text"]
    assert reply["finish_reason"] == "stop"


def test_webrt_generate_runs_on_webgpu(tiny_chat_artifact):
    """The CLI on WebGPU, with the tiny random chat model: the default model's answer on WebGPU is
    checked by tests/test_default_model.py and the chat page's test (SwiftShader's minute a run)."""
    reply = generate_json(tiny_chat_artifact, "webgpu", None, 6)
    assert reply["usage"]["completion_tokens"] >= 1
    assert reply["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("args, message", [
    (["--prompt", "hi", "--max-tokens", "0"], "--max-tokens"),
    (["--prompt", "hi", "--temperature", "-1"], "--temperature"),
])
def test_generate_rejects_bad_options(default_artifact, args, message):
    result = subprocess.run([sys.executable, "-m", "webrt.cli", "generate", str(default_artifact), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("webrt: error:") and message in result.stderr
    assert "Traceback" not in result.stderr
