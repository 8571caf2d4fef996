"""Spine benchmark: compile time, pipeline creation and forward latency (seq 1 and 64) on WebGPU.

    python bench/spine.py            # writes bench/spine.json and bench/spine.md

Forward latency is the median of repeated runs after a first run per shape (which also allocates
and encodes the plan). Not a timed test: this machine is noisy, so the load average is recorded.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.models import make_hf_model  # noqa: E402
from webrt.browser import run_forward  # noqa: E402
from webrt.build_artifact import compile_model  # noqa: E402

MODELS = {
    "llama-h256-l4 (GQA, untied)": ("llama", {"tie_word_embeddings": False}),
    "qwen2-h256-l3 (qkv bias, tied)": ("qwen2", {"tie_word_embeddings": True, "num_hidden_layers": 3}),
}
REPEATS = 5


def bench_model(arch: str, overrides: dict, work: Path) -> dict:
    folder = make_hf_model(work / "hf", arch, **overrides)
    t0 = time.perf_counter()
    artifact = compile_model(folder, work / "artifact")
    compile_s = time.perf_counter() - t0
    lists = [[1]] * (REPEATS + 1) + [list(range(64))] * (REPEATS + 1)
    result = run_forward(artifact, lists)
    times = [r["forward_ms"] for r in result["results"]]
    one, sixty_four = times[: REPEATS + 1], times[REPEATS + 1:]
    return {
        "compile_s": round(compile_s, 2),
        "load_ms": round(result["timings"]["load_ms"]),
        "pipelines_ms": round(result["timings"]["pipelines_ms"]),
        "forward_seq1_first_ms": round(one[0], 1),
        "forward_seq1_ms": round(statistics.median(one[1:]), 1),
        "forward_seq64_first_ms": round(sixty_four[0], 1),
        "forward_seq64_ms": round(statistics.median(sixty_four[1:]), 1),
        "adapter": result["adapter"],
    }


def main() -> None:
    load_before = os.getloadavg()
    results = {}
    for name, (arch, overrides) in MODELS.items():
        with tempfile.TemporaryDirectory() as work:
            results[name] = bench_model(arch, overrides, Path(work))
    report = {"command": "python bench/spine.py", "date": time.strftime("%Y-%m-%d %H:%M"),
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "models": results}
    (ROOT / "bench" / "spine.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Spine benchmark ({report['date']})", "",
             f"Command: `{report['command']}`. Device: WebGPU on SwiftShader (headless Chromium, no GPU).",
             f"Load average before: {load_before[0]:.2f}, after: {report['loadavg_after'][0]:.2f}.", "",
             "| model | compile s | load ms | pipelines ms | fwd seq1 ms | fwd seq64 ms | first seq64 ms |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['compile_s']} | {r['load_ms']} | {r['pipelines_ms']} | "
                     f"{r['forward_seq1_ms']} | {r['forward_seq64_ms']} | {r['forward_seq64_first_ms']} |")
    (ROOT / "bench" / "spine.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
