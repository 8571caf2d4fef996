"""Default-schedule against tuned throughput (decode, prefill) with the tuning time, per device.

    python bench/tuning.py ARTIFACT [--budget 30] [--prefill 64] [--steps 4] [--devices webgpu,wasm]

ARTIFACT is the default model: `webrt compile -o ARTIFACT --context-window 512` (q4f32). Each device
tunes a private copy (webrt tune bakes its DB into the artifact it tunes). Writes bench/tuning.json
and bench/tuning.md."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

from webrt.tune import tune_artifact

HERE = Path(__file__).parent


@click.command()
@click.argument("artifact", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--budget", default=30.0)
@click.option("--prefill", default=64)
@click.option("--steps", default=4)
@click.option("--devices", default="webgpu,wasm")
def main(artifact: Path, budget: float, prefill: int, steps: int, devices: str) -> None:
    runs = {}
    for device in devices.split(","):
        with tempfile.TemporaryDirectory(prefix="webrt-tuning-bench-") as work:
            copy = shutil.copytree(artifact, Path(work) / "artifact")
            before = os.getloadavg()
            t0 = time.time()
            report = tune_artifact(copy, device, budget, prefill, steps)
            report.pop("db")
            runs[device] = {**report, "wall_s": time.time() - t0, "loadavg_before": before, "loadavg_after": os.getloadavg()}
        print(f"{device}: decode {report['speedup']:.2f}x, prefill({prefill}) {report['prefill_speedup']:.2f}x, "
              f"tuning {report['seconds']:.1f}s", file=sys.stderr)
    out = {"command": " ".join(["python", "bench/tuning.py", *sys.argv[1:]]),
           "artifact": "webrt compile -o ARTIFACT --context-window 512 (SmolLM2-135M-Instruct, q4f32)",
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "runs": runs}
    (HERE / "tuning.json").write_text(json.dumps(out, indent=1))
    (HERE / "tuning.md").write_text(markdown(out, prefill))


def markdown(out: dict, prefill: int) -> str:
    lines = ["# Tuned schedules: default against tuned throughput", "",
             f"`{out['command']}` on {out['machine']['cpus']} CPUs (no GPU: WebGPU is SwiftShader). "
             f"Artifact: {out['artifact']}.", "",
             f"| device | decode tok/s default | tuned | speedup | prefill({prefill}) tok/s default | tuned | speedup "
             "| tuning s (budget) | candidates timed | same tokens | load avg before / after |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for device, r in out["runs"].items():
        d, t = r["default"], r["tuned"]
        lines.append(f"| {device} | {d['decode_tokens_per_s']:.2f} | {t['decode_tokens_per_s']:.2f} | {r['speedup']:.2f}x "
                     f"| {d['prefill_tokens_per_s']:.2f} | {t['prefill_tokens_per_s']:.2f} | {r['prefill_speedup']:.2f}x "
                     f"| {r['seconds']:.1f} ({r['budget_s']:.0f}) | {r['candidates_timed']} | {r['same_tokens']} "
                     f"| {r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f} |")
    for device, r in out["runs"].items():
        lines += ["", f"## {device}: per kernel (ms per call, median)", "",
                  "| function | default | best | winner |", "|---|---|---|---|"]
        for name, k in r["kernels"].items():
            if k["default_ms"] is not None:
                lines.append(f"| {name} | {k['default_ms']:.3f} | {k['best_ms']:.3f} | {k['winner'] or 'default'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
