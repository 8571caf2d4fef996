"""`webrt bench OUT --native`: webrt's wasm backend against native llama.cpp (the PyPI package
llama-cpp-python, a benchmark dependency: pip install 'webrt[bench]') and wllama (llama.cpp in wasm,
npm @wllama/wllama) on the same GGUF, the same prompt tokens, greedy decoding and the same thread
counts, in one run. webrt runs as compiled artifacts (one per kernel set of KERNEL_SETS: the default
kernels and the exact f32 ones), all in one headless Chromium; native runs in this process.

Prefill tok/s is prompt tokens / time to the first token; decode tok/s is over the tokens after it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..errors import WebrtError

# label -> the --int-dot mode its artifact is compiled with (webrt/compile/int_dot.py): what a user
# gets by default (integer dot products in the decode step's 4-bit and Q8_0 GEMVs), and the exact f32 kernels
KERNEL_SETS = {"default": "decode", "exact": "none"}

# A chat turn whose ChatML prompt is 213 tokens with the default model's tokenizer.
PROMPT_TEXT = (
    "I am planning a week-long trip through the north of Italy in late September. I will arrive in Milan, "
    "and I would like to see Lake Como, Verona, Venice and the Dolomites before flying home from Venice. "
    "I like walking, old churches, local food markets and small museums, but I do not enjoy crowded tourist "
    "spots or long drives. I will travel by train where possible and can rent a car for two days at most. "
    "My budget is moderate: comfortable three-star hotels, one or two nicer dinners, and mostly simple "
    "local meals. Please suggest a day-by-day plan with where to sleep each night, how to move between the "
    "places, one thing not to miss in each place, and a short note on what the weather is usually like "
    "at that time of year so I can pack well. I would also like a couple of ideas for rainy days, and tips "
    "on buying train tickets in advance."
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
    llm = _load_without_extra_buffers(Llama, gguf, threads)
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


def _load_without_extra_buffers(Llama, gguf: Path, threads: int):
    """Llama with use_extra_bufts off: on this machine's Xeon (AMX in /proc/cpuinfo) a -DGGML_NATIVE
    build routes Q4_1 matmuls to ggml's AMX buffer type, and ggml_backend_amx_mul_mat segfaults in
    llama_decode. Without the extra buffer types llama.cpp uses its plain CPU kernels (AVX-512/VNNI
    vec_dot). Llama() has no keyword for it, so its default model params are wrapped while it loads."""
    import llama_cpp
    import llama_cpp.llama as llama_module

    defaults = llama_cpp.llama_model_default_params

    def without_extra_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params

    llama_module.llama_cpp.llama_model_default_params = without_extra_buffers
    try:
        return Llama(model_path=str(gguf), n_ctx=1024, n_threads=threads, n_threads_batch=threads, n_batch=512,
                     verbose=False)
    finally:
        llama_module.llama_cpp.llama_model_default_params = defaults


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


# the x86 vector extensions native llama.cpp's -DGGML_NATIVE build picks from, in /proc/cpuinfo's names
VECTOR_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "VNNI", "amx_int8": "AMX"}


def cpu_description() -> str:
    """This machine's CPU as the report names it: the model and which of VECTOR_FLAGS it has (machines
    of one kind differ: native's speed depends on them, and wasm reaches none past SIMD128)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    # the first processor's block; keys are padded with tabs ("model name\t: ...")
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in info.split("\n\n")[0].splitlines()
                                                 if ":" in line)}
    model = " ".join(fields.get("model name", "unknown CPU").split())
    flags = set(fields.get("flags", "").split())
    return f"{model} ({', '.join(v for k, v in VECTOR_FLAGS.items() if k in flags) or 'no AVX2'})"


TARGETS = {"decode": 0.6, "prefill": 0.5}  # webrt / native (issue 20)


def _common_prefix(a: list, b: list) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n

SPEEDS = ("prefill_tokens_per_s", "decode_tokens_per_s")


def _best(runs: list[dict]) -> dict:
    """One engine's rounds: the first round's fields (tokens, text) with each speed the best round's,
    and every round's speeds under "runs" (the load moves during a run; the best round is the one
    least disturbed)."""
    return {**runs[0], **{k: max(r[k] for r in runs) for k in SPEEDS},
            "runs": [{k: round(r[k], 2) for k in SPEEDS} for r in runs]}


def compare(threads_list: list[int], decode_tokens: int, artifacts: dict[str, Path | None], workdir: Path,
            stage=lambda s: None, rounds: int = 2, profile: bool = True) -> dict:
    """The whole comparison on the default model: artifacts maps labels of KERNEL_SETS to a folder,
    or None to compile one into workdir (--no-tuning-candidates). Each round runs every engine at every
    thread count (native, then webrt and wllama in one Chromium), so all engines meet the same load."""
    from ..default_model import default_model_path

    gguf = default_model_path()
    prompt = chat_prompt()
    artifacts = {label: folder or _compile(workdir / label, KERNEL_SETS[label], stage)
                 for label, folder in artifacts.items()}
    load_before = load_average()
    started = time.time()
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(next(iter(artifacts.values())) / "tokenizer.json"))
    # native runs when llama-cpp-python is installed (`webrt bench --native` requires it; the
    # script bench/native.py reports without it, saying so)
    with_native = native_available()
    prompt_ids = tokenizer.encode(prompt).ids
    runs: dict[tuple[str, int], list[dict]] = {}
    for i in range(rounds):
        if with_native:
            for t in threads_list:
                stage(f"round {i + 1}/{rounds}: native llama.cpp, {t} thread(s)")
                native = run_native(gguf, prompt, t, decode_tokens)
                prompt_ids = native["prompt_ids"]
                runs.setdefault(("native", t), []).append(native)
        browser = run_browser(artifacts, gguf, prompt, prompt_ids, threads_list, decode_tokens, wllama=True,
                              stage=lambda s, i=i: stage(f"round {i + 1}/{rounds}: {s}"))
        for key, result in browser.items():
            runs.setdefault(key, []).append(result)
    best = {key: _best(r) for key, r in runs.items()}
    where = _where_time_goes(artifacts, len(prompt_ids), workdir, stage) if profile else None
    rows = []
    for t in threads_list:
        nat = best.get(("native", t))
        wl = best[("wllama", t)]
        for label in artifacts:
            r = best[(f"webrt-{label}", t)]
            rows.append({
                "engine": f"webrt {label}", "threads": t, **{k: r[k] for k in SPEEDS}, "runs": r["runs"],
                "prefill_vs_native": r["prefill_tokens_per_s"] / nat["prefill_tokens_per_s"] if nat else None,
                "decode_vs_native": r["decode_tokens_per_s"] / nat["decode_tokens_per_s"] if nat else None,
                "prefill_vs_wllama": r["prefill_tokens_per_s"] / wl["prefill_tokens_per_s"],
                "decode_vs_wllama": r["decode_tokens_per_s"] / wl["decode_tokens_per_s"],
                "tokens_agreeing_with_native": _common_prefix(r["tokens"], nat["tokens"]) if nat else None,
                "tokens_agreeing_with_exact": _common_prefix(r["tokens"], best[("webrt-exact", t)]["tokens"])
                if ("webrt-exact", t) in best else None,
                "text": tokenizer.decode(r["tokens"]),
            })
        if nat:
            rows.append({"engine": "native llama.cpp", "threads": t, **{k: nat[k] for k in SPEEDS},
                         "runs": nat["runs"], "text": tokenizer.decode(nat["tokens"])})
        rows.append({"engine": "wllama", "threads": t, **{k: wl[k] for k in SPEEDS}, "runs": wl["runs"],
                     "prompt_tokens": wl["prompt_tokens"], "text": wl["text"]})
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "load_average_before": load_before,
            "load_average_after": load_average(), "wall_s": round(time.time() - started), "gguf": gguf.name,
            "prompt_tokens": len(prompt_ids), "decode_tokens": decode_tokens, "rounds": rounds,
            "native": with_native, "cpu": cpu_description(), "rows": rows, "where_time_goes": where}


def _where_time_goes(artifacts: dict[str, Path], prompt_tokens: int, workdir: Path, stage) -> dict:
    """For a missed target: each artifact's per-function wasm profile at one thread (a prefill of the
    prompt's length, 16 decode steps), and this browser's measured wasm roofs (the micro-kernels of
    `webrt bench`: SIMD128 f32 matmul GFLOP/s and streaming GB/s) with the share of them each
    engine's rate reaches, from the model's FLOPs and weight bytes per token (webrt/bench/roofline.py)."""
    from .profile import profile_wasm
    from .roofline import build_microkernels, token_costs
    from .session import browser_session

    profiles = {}
    for label, folder in artifacts.items():
        stage(f"profile: webrt {label}, 1 thread")
        profiles[label] = profile_wasm(folder, prompt=prompt_tokens, steps=16, threads=1)
    stage("roofs: wasm micro-kernels")
    build_microkernels(workdir / "microkernels.wasm")
    with browser_session(workdir) as session:
        roofs = session.call("benchRoofs", {"wasmUrl": "/model/microkernels.wasm"}, timeout_s=300)
    config = json.loads((next(iter(artifacts.values())) / "manifest.json").read_text())["model"]["config"]
    costs = token_costs(config, "q4f32")
    return {"profiles": profiles, "roofs": roofs.get("wasm"), "matmul_params": costs["matmul_params"],
            "weight_bytes": costs["weight_bytes"], "decode_flops": costs["decode"](prompt_tokens)["flops"],
            "prefill_flops": costs["prefill"](prompt_tokens)["flops"]}


def write_native_report(result: dict, out: Path) -> Path:
    """OUT.json and OUT.md; returns the .md path."""
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    md = out.with_suffix(".md")
    md.write_text(_markdown(result))
    return md


def _compile(out: Path, int_dot: str, stage) -> Path:
    from ..build_artifact import compile_model

    if not (out / "manifest.json").is_file():
        stage(f"compiling the default model (--int-dot {int_dot})")
        compile_model(None, out, "q4f32", tuning_candidates=False, int_dot=int_dot)
    return out


def _markdown(r: dict) -> str:
    lines = [f"# webrt wasm against native llama.cpp and wllama ({r['date']})", "",
             f"Command: `{r['command']}`. Model: {r['gguf']} (webrt: the GGUF's Q4_1 blocks in the group "
             f"layout, f32 scale and min). One {r['prompt_tokens']}-token ChatML prompt, greedy, {r['decode_tokens']} tokens. "
             f"Load average before {r['load_average_before']}, after {r['load_average_after']}; {r['wall_s']} s.",
             f"{r.get('rounds', 1)} rounds, each running every engine at every thread count; each speed is the "
             "best round's (all rounds in the JSON's `runs`). Native is llama-cpp-python 0.3.36 built with "
             f"-DGGML_NATIVE=ON on this machine's {r.get('cpu', 'CPU')}, loaded without ggml's extra buffer types "
             "(on a Xeon with AMX, its AMX matmul segfaulted: webrt/bench/native.py). wllama 3.8.1 in the same "
             "Chromium as webrt.", "",
             *([] if r.get("native", True) else
               ["", "**Native llama.cpp was not measured in this run**: llama-cpp-python was not installed yet.", ""]),
             "| engine | threads | prefill tok/s | decode tok/s | prefill / native | decode / native | "
             "prefill / wllama | decode / wllama | tokens = native | tokens = webrt exact |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        def f(key, fmt="{:.2f}"):
            return fmt.format(row[key]) if row.get(key) is not None else ""
        lines.append(f"| {row['engine']} | {row['threads']} | {f('prefill_tokens_per_s', '{:.1f}')} | "
                     f"{f('decode_tokens_per_s', '{:.1f}')} | {f('prefill_vs_native')} | {f('decode_vs_native')} | "
                     f"{f('prefill_vs_wllama')} | {f('decode_vs_wllama')} | {f('tokens_agreeing_with_native', '{}')} | "
                     f"{f('tokens_agreeing_with_exact', '{}')} |")
    lines += ["", f"Targets (issue 20): decode >= {TARGETS['decode']:.0%} of native, prefill >= {TARGETS['prefill']:.0%}, "
              "decode and prefill >= 2x wllama.", ""]
    if r.get("where_time_goes"):
        lines += _where_markdown(r)
    return "\n".join(lines) + "\n"


def _where_markdown(r: dict) -> list[str]:
    """The roofline table (every engine's rate as a share of the measured wasm roofs) and the
    per-function profiles."""
    from .profile import top_functions

    w = r["where_time_goes"]
    roofs = w["roofs"] or {}
    lines = ["## Where the time goes", ""]
    if roofs.get("gflops"):
        gb_token = w["weight_bytes"] / 1e9
        lines += [f"Measured wasm roofs in this browser: {roofs['gflops']:.1f} GFLOP/s (SIMD128 f32 matmul micro-kernel), "
                  f"{roofs['gbs']:.1f} GB/s (streaming sum). The model: {w['matmul_params'] / 1e6:.0f} M matmul "
                  f"weights, {gb_token * 1e3:.0f} MB of q4f32 weights read per decode token, "
                  f"{w['prefill_flops'] / 1e9:.1f} GFLOP per {r['prompt_tokens']}-token prefill. Decode is bound by "
                  f"bytes (roof {roofs['gbs'] / gb_token:.0f} tok/s), prefill by FLOPs (roof "
                  f"{roofs['gflops'] * 1e9 / w['prefill_flops'] * r['prompt_tokens']:.0f} tok/s, f32 arithmetic; "
                  "integer dot products are not bound by it). Native uses this CPU's widest vectors "
                  f"({r.get('cpu', 'not recorded')}); wasm has 128-bit SIMD only.", "",
                  "| engine | threads | prefill GFLOP/s | share of the f32 roof | decode GB/s | share of the stream roof |",
                  "|---|---|---|---|---|---|"]
        for row in r["rows"]:
            gflops = row["prefill_tokens_per_s"] * w["prefill_flops"] / r["prompt_tokens"] / 1e9
            gbs = row["decode_tokens_per_s"] * gb_token
            lines.append(f"| {row['engine']} | {row['threads']} | {gflops:.1f} | {gflops / roofs['gflops']:.0%} | "
                         f"{gbs:.1f} | {gbs / roofs['gbs']:.0%} |")
        lines.append("")
    for label, p in w["profiles"].items():
        steps = 16
        lines += [f"**webrt {label}, 1 thread**: prefill of {r['prompt_tokens']} tokens {p['prefillMs']:.0f} ms, "
                  f"decode {p['decodeMs'] / steps:.1f} ms/step.", "",
                  "| decode function | ms/step | share | | prefill function | ms | share |", "|---|---|---|---|---|---|---|"]
        decode, prefill = top_functions(p["decode"], steps), top_functions(p["prefill"])
        for i in range(max(len(decode), len(prefill))):
            d = decode[i] if i < len(decode) else ("", 0, 0)
            f = prefill[i] if i < len(prefill) else ("", 0, 0)
            lines.append(f"| `{d[0]}` | {d[1]:.2f} | {d[2]:.0%} | | `{f[0]}` | {f[1]:.1f} | {f[2]:.0%} |")
        lines.append("")
    return lines
