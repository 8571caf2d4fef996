"""q4f16 against q4f32 on the default model (issue 18), on two WebGPU implementations without a GPU:
the JS shell in Deno on wgpu over Mesa's lavapipe (the adapter with shader-f16), and in headless
Chromium on Dawn over SwiftShader (no shader-f16: the same q4f16 artifact runs its f32 set).

One q4f16 artifact (context 512) serves every run: its f16 kernel set on lavapipe, its f32 set on
lavapipe with loadModel's precision "f32", on SwiftShader (fallback) and on wasm.

  * Greedy tokens: the first 16 tokens of the three standard chat prompts
    (tests/test_default_model.py PROMPTS) with the f16 set on lavapipe, against the q4f32 ones (the
    f32 kernels, on wasm in Deno: the fast way to run them; tests/test_default_model.py checks them
    against transformers). At a divergence, the top-2 margin of transformers' f32 logits (same GGUF)
    after the common prefix is measured: a near-tie explains it.
  * Speed and memory: prefill tok/s (the chat prompt), decode tok/s (15 steps after the first
    token) and the GPU memory the model holds, for q4f16 and q4f32 on lavapipe and q4f32 on
    SwiftShader, on the first --bench-prompts prompts, in one run, runtimes alternating.

    python bench/deno_f16.py [--bench-prompts 1] [--artifact DIR]   # writes bench/deno_f16.json and .md
    python bench/deno_f16.py --report-only                          # the .md again from the .json

Not a timed test: the load average is recorded with the numbers. The previous q4f32-only results
(before the f16 set existed) are in git history (commit 3f71123).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.models import default_model_greedy_reference  # noqa: E402
from tests.test_default_model import NEAR_TIE, NEW_TOKENS, PROMPTS  # noqa: E402
from webrt.browser import evaluate, shell_page  # noqa: E402
from webrt.build_artifact import compile_model  # noqa: E402
from webrt.deno_driver import artifact_url, run_script  # noqa: E402

JSON_PATH = ROOT / "bench" / "deno_f16.json"
MD_PATH = ROOT / "bench" / "deno_f16.md"

# greedy generation of each prompt, timed: prefill (to the first token), then decode steps
GREEDY_JS = """
async ([url, prompts, n, device, precision, threads]) => {
  const model = await window.webrt.loadModel(url, { device, precision, threads: threads ?? undefined, tuning: false });
  const gen = new window.webrt.Generator(model, { prefillChunk: 128 });
  const rows = [];
  for (const prompt of prompts) {
    gen.reset();
    const sampler = new window.webrt.Sampler({ temperature: 0 }, prompt);
    const t0 = performance.now();
    let { token } = await gen.prefill(prompt, sampler);
    const ttft = performance.now() - t0;
    const tokens = [token];
    const t1 = performance.now();
    while (tokens.length < n) tokens.push(token = await gen.decode(token, sampler));
    const decodeMs = (performance.now() - t1) / (n - 1);
    rows.push({ tokens, prompt_tokens: prompt.length, ttft_ms: ttft, prefill_tokens_per_s: prompt.length / (ttft / 1000),
                decode_tokens_per_s: 1000 / decodeMs });
  }
  const info = { device: model.device, adapter: model.adapter, precision: model.precision,
                 precision_reason: model.precisionReason, timings: model.timings, memory_bytes: model.gpuBytes };
  model.unload();
  return { rows, info };
}
"""

# (name, runtime, device, precision option, wasm threads)
RUNS = {
    "deno-lavapipe q4f16": ("deno", "webgpu", "auto", None),
    "deno-lavapipe q4f32": ("deno", "webgpu", "f32", None),
    "chromium-swiftshader q4f32": ("chromium", "webgpu", "auto", None),
    "deno-wasm-1 q4f32": ("deno", "wasm", "auto", 1),
}
RUNTIMES = {"deno": "Deno 2.9.8, wgpu over Mesa lavapipe (llvmpipe)", "chromium": "headless Chromium, Dawn over SwiftShader"}


def run(name: str, artifact: Path, prompts: list[list[int]]) -> dict:
    runtime, device, precision, threads = RUNS[name]
    args = [prompts, NEW_TOKENS, device, precision, threads]
    if runtime == "deno":
        with artifact_url(artifact) as url:
            return run_script(GREEDY_JS, [url, *args], timeout_s=3600)
    with shell_page(artifact) as (page, url):
        return evaluate(page, GREEDY_JS, [url, *args], timeout_s=3600)


LOAD_MEMORY_JS = """
async ([url, precision]) => {
  const model = await window.webrt.loadModel(url, { precision, tuning: false });
  const bytes = model.gpuBytes;
  model.unload();
  return bytes;
}
"""


def load_memory_mb(artifact: Path) -> dict:
    """GPU memory right after loading on lavapipe (weights and KV cache, no plan storage yet), per set."""
    with artifact_url(artifact) as url:
        return {name: run_script(LOAD_MEMORY_JS, [url, option]) / 1e6 for name, option in (("f16", "auto"), ("f32", "f32"))}


def kv_cache_mb(artifact: Path) -> dict:
    """The KV cache's MB in each kernel set: the manifest's state lists."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    size = lambda state: sum(int(np.prod(s["shape"])) * np.dtype(s["dtype"]).itemsize for s in state) / 1e6  # noqa: E731
    return {"f32": size(manifest["state"]), "f16": size(manifest["kernel_sets"]["f16"]["state"])}


def save(report: dict) -> None:
    JSON_PATH.write_text(json.dumps(report, indent=1) + "\n")


@click.command()
@click.option("--bench-prompts", default=1, show_default=True, help="How many prompts the speed rows run on every runtime.")
@click.option("--artifact", type=click.Path(path_type=Path), default=None,
              help="A q4f16 compile of the default model (context 512) to reuse; default: compile one.")
@click.option("--report-only", is_flag=True, help="Write the .md from the committed .json.")
@click.option("--compare-only", is_flag=True, help="Compare the .json's greedy tokens again (with transformers), then write the .md.")
def main(bench_prompts: int, artifact: Path | None, report_only: bool, compare_only: bool) -> None:
    if report_only:
        write_markdown(json.loads(JSON_PATH.read_text()))
        return
    tokenizer, model, prompts, refs = default_model_greedy_reference(PROMPTS, NEW_TOKENS)
    if compare_only:
        report = json.loads(JSON_PATH.read_text())
        if artifact is not None:
            report["kv_cache_mb"] = kv_cache_mb(artifact)
            report["load_memory_mb"] = load_memory_mb(artifact)
        report["greedy"] = greedy_comparison(report, model, prompts)
        save(report)
        write_markdown(report)
        return
    report = {
        "command": f"python bench/deno_f16.py --bench-prompts {bench_prompts}" + (" --artifact DIR" if artifact else ""),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "model": "SmolLM2-135M-Instruct Q4_1 GGUF -> q4f16 (the f16 and f32 WebGPU kernel sets, f32 wasm), "
                 "context 512, compile-time WebGPU schedules",
        "prompts": PROMPTS, "new_tokens": NEW_TOKENS, "loadavg_before": os.getloadavg(), "runs": {},
        "transformers_tokens": refs,
    }
    with tempfile.TemporaryDirectory() as work:
        if artifact is None:
            t0 = time.perf_counter()
            artifact = compile_model(None, Path(work) / "smollm2", "q4f16", 512, tuning_candidates=False)
            report["compile_s"] = round(time.perf_counter() - t0)
        # the speed rows alternate runtimes on the same prompts; then the rest of the greedy prompts
        plan = [("deno-wasm-1 q4f32", prompts)]
        plan += [(name, prompts[:bench_prompts]) for name in
                 ("deno-lavapipe q4f16", "deno-lavapipe q4f32", "chromium-swiftshader q4f32")]
        if bench_prompts < len(prompts):
            plan.append(("deno-lavapipe q4f16", prompts[bench_prompts:]))
        report["kv_cache_mb"] = kv_cache_mb(artifact)
        report["load_memory_mb"] = load_memory_mb(artifact)
        for name, chosen in plan:
            print(f"{time.strftime('%H:%M:%S')} {name}: {len(chosen)} prompt(s), load {os.getloadavg()[0]:.1f}", flush=True)
            result = run(name, artifact, chosen)
            entry = report["runs"].setdefault(name, {"info": result["info"], "rows": []})
            entry["rows"] += [{**row, "prompt": PROMPTS[prompts.index(p)]} for p, row in zip(chosen, result["rows"])]
            report["loadavg_after"] = os.getloadavg()
            save(report)  # a stopped run keeps what it measured
    report["greedy"] = greedy_comparison(report, model, prompts)
    save(report)
    write_markdown(report)


def greedy_comparison(report: dict, model, prompts: list[list[int]]) -> list[dict]:
    """Per prompt: the f16 tokens against the q4f32 (wasm) ones, and the reference margin where they part."""
    import torch

    by_prompt = lambda name: {row["prompt"]: row["tokens"] for row in report["runs"][name]["rows"]}  # noqa: E731
    f16, f32 = by_prompt("deno-lavapipe q4f16"), by_prompt("deno-wasm-1 q4f32")
    out = []
    for text, prompt, ref in zip(PROMPTS, prompts, report["transformers_tokens"]):
        ours, theirs = f16[text], f32[text]
        first = next((i for i in range(NEW_TOKENS) if ours[i] != theirs[i]), None)
        entry = {"prompt": text, "equal": first is None, "first_divergence": first,
                 # transformers stops at the end-of-turn token; webrt's Generator goes on
                 "q4f32_equals_transformers": theirs[:len(ref)] == ref}
        if first is not None:
            with torch.no_grad():
                logits = model(torch.tensor([prompt + theirs[:first]])).logits[0, -1].numpy()
            top = np.argsort(logits)[-2:][::-1]
            entry.update(margin=float(logits[top[0]] - logits[top[1]]), top2=[int(t) for t in top],
                         chosen={"q4f16": ours[first], "q4f32": theirs[first]}, near_tie=bool(logits[top[0]] - logits[top[1]] < NEAR_TIE))
        out.append(entry)
    return out


def write_markdown(report: dict) -> None:
    before, after = report["loadavg_before"][0], report.get("loadavg_after", [float("nan")])[0]
    lines = [f"# q4f16 against q4f32 on the default model: wgpu (Deno, lavapipe) and Dawn (Chromium, SwiftShader), {report['date']}",
             "", f"Command: `{report['command']}`. {report['model']}. No GPU here: both WebGPU adapters are CPU renderers.",
             f"Load average before: {before:.2f}, after: {after:.2f} (2 cores shared with other work: compare ratios)."
             + (f" {report['compile_note']}." if report.get("compile_note") else ""), "",
             "## Speed and memory (one run, runtimes alternating)", "",
             "| runtime | kernels | prompt | prompt tokens | time to first token ms | prefill tok/s | decode tok/s "
             "| GPU memory MB | load ms | pipelines ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    speed = {}
    for name, entry in report["runs"].items():
        info = entry["info"]
        for row in entry["rows"]:
            speed.setdefault(row["prompt"], {})[name] = row
            lines.append(f"| {name.split()[0]} | {info['device']} {info['precision']} | {row['prompt']} | {row['prompt_tokens']} | "
                         f"{row['ttft_ms']:.0f} | {row['prefill_tokens_per_s']:.2f} | {row['decode_tokens_per_s']:.2f} | "
                         f"{info['memory_bytes'] / 1e6:.1f} | {info['timings']['load_ms']:.0f} | {info['timings']['pipelines_ms']:.0f} |")
    lines += ["", "Ratios in the same run:", ""]
    for prompt, rows in speed.items():
        pairs = [("deno-lavapipe q4f16", "deno-lavapipe q4f32"), ("deno-lavapipe q4f32", "chromium-swiftshader q4f32"),
                 ("deno-lavapipe q4f16", "chromium-swiftshader q4f32")]
        for a, b in pairs:
            if a in rows and b in rows:
                lines.append(f"- {prompt!r}: {a} over {b}: prefill {rows[a]['prefill_tokens_per_s'] / rows[b]['prefill_tokens_per_s']:.2f}x, "
                             f"decode {rows[a]['decode_tokens_per_s'] / rows[b]['decode_tokens_per_s']:.2f}x")
    runs = report["runs"]
    if "deno-lavapipe q4f16" in runs and "deno-lavapipe q4f32" in runs:
        f16, f32 = (runs[n]["info"]["memory_bytes"] for n in ("deno-lavapipe q4f16", "deno-lavapipe q4f32"))
        kv = report.get("kv_cache_mb")
        lines.append(f"- GPU memory on lavapipe (model.gpuBytes after the run): q4f16 {f16 / 1e6:.1f} MB, q4f32 {f32 / 1e6:.1f} MB "
                     f"({f16 / f32:.2f}x)"
                     + "".join(f"; right after loading, before any plan storage: {m['f16']:.1f} against {m['f32']:.1f} MB"
                               for m in [report.get("load_memory_mb")] if m)
                     + ". The weights are the same bytes"
                     + (f"; the KV cache (the manifests' state) is {kv['f16']:.1f} MB in f16 against {kv['f32']:.1f} MB in f32"
                        if kv else "") + ".")
    for name, entry in runs.items():
        lines.append(f"- {name}: precision {entry['info']['precision']}: {entry['info']['precision_reason']}")
    if report.get("greedy"):
        lines += ["", f"## Greedy tokens: q4f16 (f16 set, lavapipe) against q4f32 (f32 kernels, wasm), first {report['new_tokens']}", "",
                  "| prompt | equal | first divergence | reference top-2 margin there | near-tie (< 0.01) | q4f32 equals transformers |",
                  "|---|---|---|---|---|---|"]
        for g in report["greedy"]:
            margin = f"{g['margin']:.4f}" if "margin" in g else "-"
            lines.append(f"| {g['prompt']} | {'yes' if g['equal'] else 'no'} | {g['first_divergence'] if g['first_divergence'] is not None else '-'} "
                         f"| {margin} | {('yes' if g.get('near_tie') else 'no') if 'margin' in g else '-'} | "
                         f"{'yes' if g['q4f32_equals_transformers'] else 'no'} |")
    if report.get("notes"):
        lines += ["", "## Notes", "", *(f"- {note}" for note in report["notes"])]
    MD_PATH.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
