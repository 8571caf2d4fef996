"""`webrt bench OUT --native`: webrt's wasm backend against native llama.cpp (the PyPI package
llama-cpp-python, a benchmark dependency: pip install 'webrt[bench]') and wllama (llama.cpp in wasm,
npm @wllama/wllama) on the same GGUF, the same prompt tokens, greedy decoding and the same thread
counts, in one run. webrt runs as compiled artifacts (one per kernel set, e.g. the exact f32 and
the int-dot wasm kernels), all in one headless Chromium; native runs in this process.

Prefill tok/s is prompt tokens / time to the first token; decode tok/s is over the tokens after it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import WebrtError

# A chat turn whose ChatML prompt is 213 tokens with the default model's tokenizer.
PROMPT_TEXT = (
    "I am planning a week-long trip through the north of Italy in late September. I will arrive in Milan, "
    "and I would like to see Lake Como, Verona, Venice and the Dolomites before flying home from Venice. "
    "I like walking, old churches, local food markets and small museums, but I do not enjoy crowded tourist "
    "spots or long drives. I will travel by train where possible and can rent a car for two days at most. "
    "My budget is moderate: comfortable three-star hotels, one or two nicer dinners, and mostly simple "
    "local meals. Please suggest a day-by-day plan with where to sleep each night, how to move between the "
    "places, one thing not to miss in each place, and a short note on what the weather is usually like "
    "at that time of year so I can pack well."
)
SYSTEM_TEXT = "You are a helpful travel assistant."


def chat_prompt(system: str = SYSTEM_TEXT, user: str = PROMPT_TEXT) -> str:
    """The default model's ChatML template with a generation prompt."""
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def native_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def run_native(gguf: Path, prompt: str, threads: int, decode_tokens: int) -> dict:
    """Greedy generation in native llama.cpp: {prompt_ids, tokens, prefill_tokens_per_s, decode_tokens_per_s}."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise WebrtError("--native needs llama-cpp-python: pip install 'webrt[bench]' "
                         "(CMAKE_ARGS=\"-DGGML_NATIVE=ON\" builds it for this CPU)") from None
    llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=threads, n_threads_batch=threads, n_batch=512,
                verbose=False)
    ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    # warm-up (first-touch of the weights, thread pool start)
    llm.reset()
    llm.eval(ids[:8])
    llm.reset()
    t0 = time.perf_counter()
    tokens, t_first = [], None
    for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
        if t_first is None:
            t_first = time.perf_counter()
        tokens.append(int(token))
        if len(tokens) >= decode_tokens:
            break
    t_end = time.perf_counter()
    llm.close() if hasattr(llm, "close") else None
    return {"prompt_ids": [int(i) for i in ids], "tokens": tokens,
            "prefill_tokens_per_s": len(ids) / (t_first - t0),
            "decode_tokens_per_s": (len(tokens) - 1) / (t_end - t_first)}


WEBRT_JS = """
async ([url, prompt, decodeTokens, threads], stage) => {
  const model = await window.webrt.loadModel(url, { device: "wasm", threads });
  const gen = new window.webrt.Generator(model);
  const run = async (ids, n) => {
    gen.reset();
    const sampler = new window.webrt.Sampler({ temperature: 0 }, ids);
    const t0 = performance.now();
    let { token } = await gen.prefill(ids, sampler);
    const t1 = performance.now();
    const tokens = [token];
    for (let i = 1; i < n; i++) tokens.push(token = await gen.decode(token, sampler));
    const t2 = performance.now();
    return { tokens, prefill_tokens_per_s: ids.length / ((t1 - t0) / 1000),
             decode_tokens_per_s: (n - 1) / ((t2 - t1) / 1000) };
  };
  stage("warm-up");
  await run(prompt.slice(0, 16), 4);
  stage("prompt");
  const result = await run(prompt, decodeTokens);
  result.threads = model.threads;
  model.unload();
  return result;
}
"""

WLLAMA_JS = """
async ([ggufUrl, prompt, decodeTokens, threads], stage) => {
  const { Wllama } = await import("/node_modules/@wllama/wllama/esm/index.js");
  const wllama = new Wllama({ default: "/node_modules/@wllama/wllama/esm/wasm/wllama.wasm" });
  const blob = await (await fetch(ggufUrl)).blob();
  await wllama.loadModel([blob], { n_threads: threads, n_ctx: 1024, n_gpu_layers: 0 });
  stage("warm-up");
  await wllama.createCompletion({ prompt: "Hello", max_tokens: 4, temperature: 0, top_k: 1 });
  stage("prompt");
  const r = await wllama.createCompletion({ prompt, max_tokens: decodeTokens, temperature: 0, top_k: 1,
                                            cache_prompt: false });
  await wllama.exit();
  const t = r.timings;
  return { text: r.choices[0].text, prompt_tokens: t.prompt_n, prefill_tokens_per_s: t.prompt_per_second,
           decode_tokens_per_s: t.predicted_per_second, multi_thread: threads > 1 };
}
"""


def run_browser(artifacts: dict[str, Path], gguf: Path, prompt: str, prompt_ids: list[int], threads_list: list[int],
                decode_tokens: int, wllama: bool, stage=lambda s: None) -> dict:
    """{(engine, threads): result} for webrt artifacts (label -> folder) and wllama, in one Chromium."""
    from ..browser import evaluate, shell_page
    from ..server import NODE_MODULES

    if wllama and not (NODE_MODULES / "@wllama/wllama/esm/wasm/wllama.wasm").is_file():
        raise WebrtError(f"the wllama comparison needs @wllama/wllama in {NODE_MODULES}: "
                         "npm i --no-save --ignore-scripts @wllama/wllama@3.8.1")
    results = {}
    for label, folder in artifacts.items():
        link = folder / "model.gguf"  # the page fetches the GGUF from the served artifact folder
        if wllama and not link.exists():
            link.symlink_to(gguf.resolve())
        with shell_page(folder) as (page, url):
            for threads in threads_list:
                stage(f"webrt {label}, {threads} thread(s)")
                results[(f"webrt-{label}", threads)] = evaluate(page, WEBRT_JS, [url, prompt_ids, decode_tokens, threads])
            if wllama and not any(k[0] == "wllama" for k in results):
                for threads in threads_list:
                    stage(f"wllama, {threads} thread(s)")
                    results[("wllama", threads)] = evaluate(page, WLLAMA_JS, [url + "model.gguf", prompt, decode_tokens,
                                                                               threads])
    return results


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]
