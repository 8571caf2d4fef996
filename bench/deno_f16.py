"""The default model on two WebGPU implementations without a GPU: the JS shell in Deno on wgpu over
Mesa's lavapipe (the adapter with shader-f16), and in headless Chromium on Dawn over SwiftShader.
Prefill tokens/s for the given prompt lengths, decode tokens/s, load and pipeline time, and the
GPU memory the model holds, measured with bench/chat.py's script, in alternating rounds so that the
ratios come from one run. The q4f16 kernel set (issue 18) is not built yet: its rows say so.

    python bench/deno_f16.py [--rounds 2] [--prompt-lens 32,128] [--artifact DIR]   # writes bench/deno_f16.json and .md

Not a timed test: the load average is recorded with the numbers.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chat import BENCH_JS, DECODE_TOKENS  # noqa: E402
from webrt.browser import evaluate, shell_page  # noqa: E402
from webrt.build_artifact import compile_model  # noqa: E402
from webrt.deno_driver import artifact_url, run_script  # noqa: E402

RUNTIMES = {"deno-lavapipe": "Deno 2.9.8, wgpu over Mesa lavapipe (llvmpipe)",
            "chromium-swiftshader": "headless Chromium, Dawn over SwiftShader"}


def measure(runtime: str, artifact: Path, lengths: list[int]) -> dict:
    args = [lengths, DECODE_TOKENS, "webgpu", None]
    if runtime == "deno-lavapipe":
        with artifact_url(artifact) as url:
            return run_script(BENCH_JS, [url, *args])
    with shell_page(artifact) as (page, url):
        return evaluate(page, BENCH_JS, [url, *args])


@click.command()
@click.option("--rounds", default=2, show_default=True, help="Alternating rounds per runtime; the best is kept.")
@click.option("--prompt-lens", default="32,128", show_default=True, help="Prompt lengths (tokens), comma-separated.")
@click.option("--artifact", type=click.Path(path_type=Path), default=None,
              help="A q4f32 compile of the default model to reuse (context 512); default: compile one.")
def main(rounds: int, prompt_lens: str, artifact: Path | None) -> None:
    lengths = [int(n) for n in prompt_lens.split(",")]
    load_before = os.getloadavg()
    given = artifact is not None
    with tempfile.TemporaryDirectory() as work:
        if artifact is None:
            artifact = compile_model(None, Path(work) / "smollm2", "q4f32", 512, tuning_candidates=False)
        runs = {name: [] for name in RUNTIMES}
        for _ in range(rounds):
            for name in RUNTIMES:
                runs[name].append(measure(name, artifact, lengths))
    report = {
        "command": f"python bench/deno_f16.py --rounds {rounds} --prompt-lens {prompt_lens}" + (" --artifact DIR" if given else ""),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "model": "SmolLM2-135M-Instruct Q4_1 GGUF -> q4f32, context 512, compile-time WebGPU schedules",
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "q4f16": "not built: the f16 kernel set of issue 18 does not exist yet",
        "runtimes": {},
    }
    for name, results in runs.items():
        best = [max((r["rows"][i] for r in results), key=lambda row: row["decode_tokens_per_s"])
                for i in range(len(lengths))]
        info = results[-1]["info"]
        report["runtimes"][name] = {
            "runtime": RUNTIMES[name], "adapter": info["adapter"], "memory_mb": round(info["memory_bytes"] / 1e6, 1),
            "load_ms": round(min(r["info"]["timings"]["load_ms"] for r in results)),
            "pipelines_ms": round(min(r["info"]["timings"]["pipelines_ms"] for r in results)),
            "runs": [{k: round(v, 2) for k, v in row.items()} for row in best],
            "all_rounds": [[{k: round(v, 2) for k, v in row.items()} for row in r["rows"]] for r in results],
        }
    deno, chromium = (report["runtimes"][n] for n in RUNTIMES)
    (ROOT / "bench" / "deno_f16.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# The default model on wgpu (Deno, lavapipe) and Dawn (Chromium, SwiftShader), {report['date']}", "",
             f"Command: `{report['command']}`. {report['model']}. Both are CPU renderers (no GPU here); "
             f"best of {rounds} alternating rounds per runtime.",
             f"Load average before: {load_before[0]:.2f}, after: {report['loadavg_after'][0]:.2f}.", "",
             "| runtime | weights | load ms | pipelines ms | GPU memory MB | prompt tokens | time to first token ms "
             "| prefill tok/s | decode tok/s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, d in report["runtimes"].items():
        for row in d["runs"]:
            lines.append(f"| {name} | q4f32 | {d['load_ms']} | {d['pipelines_ms']} | {d['memory_mb']} | "
                         f"{row['prompt_tokens']} | {row['ttft_ms']:.0f} | {row['prefill_tokens_per_s']:.2f} | "
                         f"{row['decode_tokens_per_s']:.2f} |")
    lines.append("| deno-lavapipe | q4f16 | - | - | - | - | - | - | - |")
    lines += ["", "Ratios, Deno/lavapipe over Chromium/SwiftShader (same run):", ""]
    for i, n in enumerate(lengths):
        a, b = deno["runs"][i], chromium["runs"][i]
        lines.append(f"- {n}-token prompt: prefill {a['prefill_tokens_per_s'] / b['prefill_tokens_per_s']:.2f}x, "
                     f"decode {a['decode_tokens_per_s'] / b['decode_tokens_per_s']:.2f}x")
    lines.append(f"- pipeline creation {deno['pipelines_ms'] / chromium['pipelines_ms']:.2f}x the time")
    lines += ["", f"q4f16: {report['q4f16']}; its row stays empty until it is."]
    (ROOT / "bench" / "deno_f16.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
