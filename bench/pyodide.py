"""Python in the browser against JS, on one engine: the site's Python page (python.html) loads the
default model through webrt_web in a Worker; then the very same worker engine streams the same greedy
reply, in turns, to a JS consumer on the page and to a Python consumer in Pyodide (webrt_web's async
iterator). Decode tokens/s is measured where each consumer receives the chunks: (completion tokens - 1)
/ (time of the last chunk - time of the first content chunk), so the bridge's cost per chunk
(Pyodide's FFI, the dict conversion) is inside the Python number. Target: Python >= 95% of JS.

    python bench/pyodide.py [--rounds 5] [--max-tokens 64] [--threads 1,2] [--artifact DIR]   # bench/pyodide.json, .md

Not a timed test: the load average is recorded with the numbers, and the two sides alternate so that
a change in load hits both.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.browser import chromium_context  # noqa: E402
from webrt.build_artifact import compile_model  # noqa: E402
from webrt.python_demo import PythonPage  # noqa: E402
from webrt.server import create_site_app, serve_in_background  # noqa: E402
from webrt.site import build_site  # noqa: E402

PROMPT = "Write a long story about a cat who learns to fly."

# The JS consumer: the same measurement as the Python one below, on the engine Python made.
JS_CONSUMER = """
() => {
  // busyMs: a control, the main thread kept busy that long per chunk (as long as Python's bridge takes)
  window.webrtBenchJs = async (request, busyMs = 0) => {
    let first = null, last = null, usage = null;
    for await (const chunk of await window.webrtBenchEngine.chat.completions.create(request)) {
      const now = performance.now();
      if (chunk.choices[0].delta.content && first === null) first = now;
      last = now;
      usage = chunk.usage ?? usage;
      while (performance.now() < now + busyMs);
    }
    return { first, last, usage };
  };
  // the bridge alone: chunks of a reply's shape from a JS async generator, as fast as they are taken
  window.webrtBenchChunks = async function* (n) {
    for (let i = 0; i < n; i++) {
      yield { id: "chatcmpl-bench", object: "chat.completion.chunk", created: 1, model: "m",
              choices: [{ index: 0, delta: { content: " word" }, finish_reason: null }] };
    }
  };
  window.webrtBenchJsChunks = async (n) => {
    const t = performance.now();
    for await (const chunk of window.webrtBenchChunks(n)) chunk.choices[0].delta.content;
    return (performance.now() - t) / n;
  };
}
"""

PYTHON = """
import js, json
from webrt_web import create_engine
from webrt_web.engine import Stream, _js_object

engine = await create_engine({model!r}, device="wasm", threads={threads})
js.window.webrtBenchEngine = engine.js_engine  # the same worker engine, for the JS consumer
request = {{"messages": [{{"role": "user", "content": {prompt!r}}}], "stream": True, "temperature": 0,
           "max_tokens": {max_tokens}}}


async def python_consumer():
    first = last = usage = None
    async for chunk in await engine.chat.completions.create(**request):
        now = js.performance.now()
        if chunk["choices"][0]["delta"].get("content") and first is None:
            first = now
        last = now
        usage = chunk.get("usage") or usage
    return {{"first": first, "last": last, "usage": usage}}


async def js_consumer():
    return (await js.window.webrtBenchJs(_js_object(request))).to_py()


async def js_busy_consumer():
    return (await js.window.webrtBenchJs(_js_object(request), bridge["python"])).to_py()


def row(side, r):
    n = r["usage"]["completion_tokens"]
    return {{"side": side, "tokens": n, "decode_tokens_per_s": (n - 1) / ((r["last"] - r["first"]) / 1000),
            "engine_decode_tokens_per_s": r["usage"]["extra"]["decode_tokens_per_s"],
            "token_ids": list(r["usage"]["extra"]["token_ids"])}}


async def bridge_ms_per_chunk(n=2000):
    t = js.performance.now()
    async for chunk in Stream(js.window.webrtBenchChunks(n)):
        chunk["choices"][0]["delta"].get("content")
    return {{"python": (js.performance.now() - t) / n, "js": await js.window.webrtBenchJsChunks(n)}}


bridge = await bridge_ms_per_chunk()
print(json.dumps({{"side": "bridge", **bridge}}), flush=True)
await python_consumer()  # warm-up: first-use costs on both sides of the bridge
await js_consumer()
for i in range({rounds}):
    sides = [("js", js_consumer), ("python", python_consumer), ("js_busy", js_busy_consumer)]
    for side, consume in (sides if i % 2 == 0 else sides[::-1]):
        await engine.reset_chat()  # every run prefills the same prompt from scratch
        print(json.dumps(row(side, await consume())), flush=True)
"""


def measure(page: PythonPage, model: str, threads: int, rounds: int, max_tokens: int) -> dict:
    page.page.evaluate(JS_CONSUMER)
    run = page.run(PYTHON.format(model=model, threads=threads, prompt=PROMPT, max_tokens=max_tokens, rounds=rounds))
    try:
        rows = [json.loads(line) for line in run.output.splitlines() if line.strip()]
    except ValueError:
        raise SystemExit(f"the bench code failed: {run.output}") from None
    bridge = rows.pop(0)
    ids = {json.dumps(r.pop("token_ids")) for r in rows}
    assert len(ids) == 1, "the two consumers saw different tokens"
    sides = ("js", "python", "js_busy")
    med = {side: statistics.median(r["decode_tokens_per_s"] for r in rows if r["side"] == side) for side in sides}
    # each round's runs are neighbours in time: their ratio cancels slow drifts in load
    rounds = [{r["side"]: r for r in rows[i:i + 3]} for i in range(0, len(rows), 3)]
    ratio = lambda side: round(statistics.median(r[side]["decode_tokens_per_s"] / r["js"]["decode_tokens_per_s"]
                                                 for r in rounds), 4)
    return {"threads": threads, "tokens": rows[0]["tokens"], "rows": rows,
            "median_decode_tokens_per_s": {k: round(v, 2) for k, v in med.items()},
            "python_over_js": round(med["python"] / med["js"], 4),
            "median_round_ratio": ratio("python"), "median_round_ratio_js_busy": ratio("js_busy"),
            "bridge_ms_per_chunk": {"python": round(bridge["python"], 4), "js": round(bridge["js"], 4)}}


@click.command()
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True, help="Runs per side and thread count.")
@click.option("--max-tokens", type=click.IntRange(min=8), default=64, show_default=True)
@click.option("--threads", default="1,2", show_default=True, help="wasm thread counts.")
@click.option("--artifact", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A compiled default model to use (default: compile it, q4f32, context 512).")
def main(rounds: int, max_tokens: int, threads: str, artifact: Path | None) -> None:
    load_before = os.getloadavg()
    results = []
    given = f" --artifact {artifact}" if artifact else ""
    with tempfile.TemporaryDirectory() as work:
        artifact = artifact or compile_model(None, Path(work) / "smollm2", "q4f32", 512)
        site = build_site([artifact], Path(work) / "site", python=True)
        model = json.loads((site / "site.json").read_text())["models"][0]["path"]
        with serve_in_background(create_site_app(site)) as base, chromium_context() as context:
            page = PythonPage(context.new_page())
            page.open(base + "/")
            for n in map(int, threads.split(",")):
                results.append(measure(page, model, n, rounds, max_tokens))
    report = {"command": f"python bench/pyodide.py --rounds {rounds} --max-tokens {max_tokens} --threads {threads}{given}",
              "date": time.strftime("%Y-%m-%d %H:%M"), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "model": "SmolLM2-135M-Instruct Q4_1 GGUF -> q4f32, context 512, wasm kernels (default model)",
              "prompt": PROMPT, "results": results}
    (ROOT / "bench" / "pyodide.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Python (Pyodide) against JS on one engine ({report['date']})", "",
             f"Command: `{report['command']}`. {report['model']}; headless Chromium, the site's Python page served "
             "by webrt serve (crossOriginIsolated). One worker engine, one greedy reply of the same tokens, "
             f"consumed in turns by JS and by Python (webrt_web); medians of {rounds} runs per side.",
             f"Load average (1 min) before: {load_before[0]:.2f}, after: {report['loadavg_after'][0]:.2f}.", "",
             "| wasm threads | tokens | JS decode tok/s | Python decode tok/s | Python / JS (medians) "
             "| Python / JS (median of rounds) | bridge ms per chunk, Python / JS | JS + busy main thread / JS |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        m, b = r["median_decode_tokens_per_s"], r["bridge_ms_per_chunk"]
        lines.append(f"| {r['threads']} | {r['tokens']} | {m['js']} | {m['python']} | {r['python_over_js']:.3f} "
                     f"| {r['median_round_ratio']:.3f} | {b['python']} / {b['js']} | {r['median_round_ratio_js_busy']:.3f} |")
    lines += ["", "Decode tokens/s as each consumer receives the chunks (first content chunk to last chunk), so the "
              "Pyodide bridge is inside the Python number. Target: Python / JS >= 0.95. Bridge: the main thread's "
              "time per chunk taken from a JS async generator of reply-shaped chunks, with nothing else to wait for "
              "(webrt_web's Stream against a JS for-await loop). The last column is a control: the JS consumer that "
              "keeps the page's main thread busy for the bridge's time after every chunk."]
    (ROOT / "bench" / "pyodide.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
