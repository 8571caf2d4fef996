"""Cold-start compile time of the default model: `webrt compile` (WebGPU kernels and the three
wasm builds) in a fresh process with an empty zig cache, so the wasm C library is built too.

    python bench/compile_time.py [--quantization q4f32] [--context-window N]

Writes bench/compile_time.md and .json (the issue's budget: 3 minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import click

HERE = Path(__file__).resolve().parent
BUDGET_S = 180


@click.command()
@click.option("--quantization", default=None, help="default: webrt's own (q4f32 for the default model)")
@click.option("--context-window", type=int, default=None)
def main(quantization: str | None, context_window: int | None) -> None:
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="webrt-compile-bench-") as work:
        work = Path(work)
        env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(work / "zig-cache"), "ZIG_LOCAL_CACHE_DIR": str(work / "zig-local")}
        for run in ("cold (empty zig cache)", "warm"):
            command = [sys.executable, "-m", "webrt.cli", "compile", "-o", str(work / run.split()[0])]
            if quantization:
                command += ["--quantization", quantization]
            if context_window:
                command += ["--context-window", str(context_window)]
            t0 = time.perf_counter()
            subprocess.run(command, check=True, env=env, capture_output=True)
            seconds = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in (work / run.split()[0]).rglob("*") if f.is_file())
            rows.append({"run": run, "seconds": round(seconds, 1), "artifact_mb": round(size / 1e6, 1)})
            print(f"{run}: {seconds:.1f} s, artifact {size / 1e6:.1f} MB")
    load_after = os.getloadavg()
    shown = " ".join(c for c in ["python bench/compile_time.py",
                                 f"--quantization {quantization}" if quantization else "",
                                 f"--context-window {context_window}" if context_window else ""] if c)
    report = {"command": shown, "date": datetime.now().isoformat(timespec="minutes"), "budget_s": BUDGET_S,
              "load_before": load_before, "load_after": load_after, "runs": rows}
    (HERE / "compile_time.json").write_text(json.dumps(report, indent=1))
    lines = [f"# Compile time of the default model ({report['date']})", "",
             f"Command: `{shown}`. `webrt compile` in a fresh process: WebGPU kernels plus the simd, threads "
             "and scalar wasm builds. The cold run starts with an empty zig cache, so zig also builds the "
             f"wasm C library for each build's CPU features. Budget: {BUDGET_S} s.",
             f"Load average before: {load_before[0]:.2f}, after: {load_after[0]:.2f}.", "",
             "| run | seconds | artifact MB |", "|---|---|---|"]
    lines += [f"| {r['run']} | {r['seconds']} | {r['artifact_mb']} |" for r in rows]
    (HERE / "compile_time.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
