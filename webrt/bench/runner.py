"""`webrt bench`: build the models, then run webrt and its peers in one headless Chromium, one fresh
page per (model, engine, device, threads), with the same prompts and greedy decoding."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .models import ModelSpec, prepare_random_model
from .roofline import build_microkernels

PEERS = ("ort", "transformers.js")
SETTLE_MAX_S = 10.0    # longest wait for the CPUs to go idle before an engine run
SETTLE_BUSY = 0.15     # "idle": under this fraction of all CPU time busy over half a second


def _cpu_busy(interval: float = 0.5) -> float | None:
    """Fraction of all CPU time spent busy over `interval` (/proc/stat); None where there is none."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except OSError:
        return None
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def settle() -> float:
    """Wait (up to SETTLE_MAX_S) until the machine is idle; returns the seconds waited. A closed page's
    work can outlive it (SwiftShader finishing a peer's queued WebGPU submissions, a thread pool
    spinning down) and would otherwise slow the next engine's run."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < SETTLE_MAX_S:
        busy = _cpu_busy()
        if busy is None or busy < SETTLE_BUSY:
            break
    return time.perf_counter() - t0


@dataclass
class BenchOptions:
    models: list[ModelSpec]
    devices: list[str] = field(default_factory=lambda: ["webgpu", "wasm"])
    threads: list[int] = field(default_factory=lambda: [1])
    peers: bool = False
    prompt_lens: list[int] = field(default_factory=lambda: [16, 64, 256])
    decode_tokens: int = 32
    budget_s: float = 60.0  # per engine run: warm-up and prompts (see web/bench.js)
    profile_tokens: int = 4
    roofs: bool = True


def make_prompts(vocab: int, lengths: list[int]) -> list[list[int]]:
    """Seeded random token ids, the same for every engine; shortest first."""
    return [np.random.RandomState(1000 + n).randint(0, vocab, n).tolist() for n in sorted(lengths)]


def prepare_model(spec: ModelSpec, workdir: Path, stage: Callable[[str], None]) -> dict:
    """The webrt artifact (and, for random models, the HF folder with its ONNX export)."""
    from ..build_artifact import compile_model

    folder = workdir / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    timings = {}
    hf = None
    if spec.random:
        stage(f"{spec.name}: random weights and ONNX export")
        t0 = time.perf_counter()
        hf = prepare_random_model(spec, folder / "hf")
        timings["build_and_export_s"] = time.perf_counter() - t0
    stage(f"{spec.name}: webrt compile")
    t0 = time.perf_counter()
    artifact = compile_model(hf, folder / "artifact", spec.quantization, spec.context)
    timings["compile_s"] = time.perf_counter() - t0
    manifest = json.loads((artifact / "manifest.json").read_text())
    onnx = hf / "onnx" / "model.onnx" if hf else None
    return {"spec": spec, "manifest": manifest, "timings": timings,
            "onnx_bytes": onnx.stat().st_size if onnx else None}


def engine_runs(spec: ModelSpec, options: BenchOptions) -> list[tuple[str, str, int]]:
    """(engine, device, threads) for one model: wasm at each thread count, WebGPU once."""
    runs = []
    for device in options.devices:
        for threads in (options.threads if device == "wasm" else [1]):
            runs.append(("webrt", device, threads))
            if options.peers and spec.random:
                runs += [(peer, device, threads) for peer in PEERS]
    return runs


def run_bench(options: BenchOptions, workdir: Path, stage: Callable[[str], None] = lambda s: None) -> dict:
    from .session import browser_session

    started = time.perf_counter()
    load_before = os.getloadavg()
    prepared = [prepare_model(spec, workdir, stage) for spec in options.models]
    wasm_url = None
    if options.roofs:
        build_microkernels(workdir / "microkernels.wasm")
        wasm_url = "/model/microkernels.wasm"
    results = {"models": {}, "roofs": None}
    with browser_session(workdir) as session:
        if options.roofs:
            stage("roofs: wasm and WGSL micro-kernels")
            results["roofs"] = session.call("benchRoofs", {"wasmUrl": wasm_url}, timeout_s=300)
        for model in prepared:
            spec = model["spec"]
            prompts = make_prompts(model["manifest"]["model"]["config"]["vocab_size"], options.prompt_lens)
            runs = []
            for engine, device, threads in engine_runs(spec, options):
                stage(f"{spec.name}: {engine} {device}" + (f" {threads} thread(s)" if device == "wasm" else ""))
                config = {"engine": engine, "device": device, "threads": threads,
                          "artifactUrl": f"/model/{spec.name}/artifact/", "hfUrl": f"/model/{spec.name}/hf/",
                          "modelId": f"{spec.name}/hf", "prompts": prompts, "decodeTokens": options.decode_tokens,
                          "budgetMs": options.budget_s * 1000,
                          "profileTokens": options.profile_tokens if engine == "webrt" else 0}
                settled = settle()
                before = os.getloadavg()
                t0 = time.perf_counter()
                result = session.call("benchRun", config, timeout_s=options.budget_s * 4 + 600)
                runs.append({"engine": engine, "device": device, "threads": threads, "settle_s": settled,
                             "loadavg_before": before, "loadavg_after": os.getloadavg(),
                             "wall_s": time.perf_counter() - t0, **result})
            results["models"][spec.name] = {
                "description": spec.describe(), "config": model["manifest"]["model"]["config"],
                "quantization": spec.quantization, "prepare": model["timings"], "onnx_bytes": model["onnx_bytes"],
                "prompt_tokens": [len(p) for p in prompts], "runs": runs,
            }
    results.update(loadavg_before=load_before, loadavg_after=os.getloadavg(),
                   wall_s=time.perf_counter() - started)
    return results
