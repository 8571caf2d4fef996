"""`webrt bench OUT`: throughput and latency of webrt next to onnxruntime-web and transformers.js
in the same headless Chromium, with plots and a roofline."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from ..errors import WebrtError
from ..output_paths import check_writable


class BenchFlagged(WebrtError):
    """The report was written, but the engines' greedy tokens disagree."""

    exit_code = 1


def _int_list(option: str, text: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise WebrtError(f"{option} {text!r} is not a comma-separated list of integers") from None
    if not values or any(v < minimum for v in values):
        raise WebrtError(f"{option} {text!r}: give integers >= {minimum}, e.g. {option} 1,2")
    return sorted(set(values))


def _devices(text: str) -> list[str]:
    devices = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in devices if d not in ("webgpu", "wasm")]
    if bad or not devices:
        raise WebrtError(f"--device {text!r}: each device must be webgpu or wasm, e.g. --device webgpu,wasm")
    return list(dict.fromkeys(devices))


def _check_dependencies(peers: bool) -> None:
    import importlib.util

    from ..server import NODE_MODULES

    missing = [m for m in ("torch", "onnx", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        raise WebrtError(f"webrt bench needs {', '.join(missing)}: pip install 'webrt[bench]'")
    if peers:
        absent = [p for p in ("onnxruntime-web", "@huggingface/transformers") if not (NODE_MODULES / p).is_dir()]
        if absent:
            raise WebrtError(f"--peers needs the npm packages {', '.join(absent)} in {NODE_MODULES}: "
                             "run `npm ci` in the webrt folder")


def _native(out: Path, threads: list[int], decode_tokens: int, workdir: Path | None) -> None:
    from ..cli import StageReporter, console
    from .native import KERNEL_SETS, compare, native_available, write_native_report

    if not native_available():
        raise WebrtError("--native needs llama-cpp-python: pip install 'webrt[bench]' "
                         "(CMAKE_ARGS=\"-DGGML_NATIVE=ON\" builds it for this CPU)")
    check_writable(out / "native" if out.is_dir() else out, "the report")
    out = out / "native" if out.is_dir() else out
    reporter = StageReporter()
    with tempfile.TemporaryDirectory(prefix="webrt-bench-") as tmp:
        try:
            result = compare(threads, decode_tokens, {label: None for label in KERNEL_SETS}, workdir or Path(tmp), stage=reporter)
        except BaseException:
            reporter.finish(ok=False)
            raise
        reporter.finish()
    result = {"command": "webrt " + " ".join(shlex.quote(a) for a in sys.argv[1:]), **result}
    console.print(f"report written to {write_native_report(result, out)}")


def _browser_version() -> str:
    from ..browser import chromium_path

    try:
        return subprocess.run([chromium_path(), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@click.command("bench")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--device", "devices", default="webgpu,wasm", show_default=True,
              help="Backends to measure, comma-separated: webgpu, wasm.")
@click.option("--threads", default="1", show_default=True,
              help="wasm thread counts, comma-separated (e.g. 1,2); WebGPU runs once.")
@click.option("--peers", is_flag=True,
              help="Also run onnxruntime-web (WASM and WebGPU EPs) and transformers.js on an ONNX export of "
                   "each random model, and compare tokens and speed.")
@click.option("--prompt-lens", default="16,64,256", show_default=True, help="Prompt lengths in tokens.")
@click.option("--models", default="llama-h256-l4,llama-h768-l12,smollm2-q4f32", show_default=True,
              help="Models: llama-h256-l4, llama-h768-l12 (random LLaMA, f32, vocab 2048), smollm2-q4f32 "
                   "(the default model; webrt only), llama-h64-l2 (tiny, for tests).")
@click.option("--decode-tokens", type=click.IntRange(min=2), default=32, show_default=True,
              help="Greedy tokens per prompt (the first comes from the prefill).")
@click.option("--budget-s", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds each engine run may spend on a warm-up and its prompts: a prompt predicted to overrun "
                   "is skipped (the shortest always runs) and past it decoding stops after 5 tokens.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Keep models, ONNX exports and artifacts here and reuse them (default: a temporary folder).")
@click.option("--native", is_flag=True,
              help="Instead: the default model's wasm backend (default and exact f32 kernels) against native llama.cpp "
                   "(llama-cpp-python) and wllama on the same GGUF, 213-token prompt, greedy, at --threads "
                   "(webrt/bench/native.py).")
def bench_cmd(out: Path, devices: str, threads: str, peers: bool, prompt_lens: str, models: str,
              decode_tokens: int, budget_s: float, workdir: Path | None, native: bool):
    """Measure load time, prefill and decode tokens/s, time to first token and peak memory in headless
    Chromium, and write OUT.json, OUT.md and plots (OUT-throughput.png, OUT-roofline.png). OUT is a
    path prefix such as bench/latest, or a folder."""
    from ..cli import StageReporter, console
    if native:
        return _native(out, _int_list("--threads", threads), decode_tokens, workdir)
    from .models import parse_models
    from .report import analyse, write_report
    from .runner import BenchOptions, run_bench

    options = BenchOptions(models=parse_models(models), devices=_devices(devices), threads=_int_list("--threads", threads),
                           peers=peers, prompt_lens=_int_list("--prompt-lens", prompt_lens),
                           decode_tokens=decode_tokens, budget_s=budget_s)
    _check_dependencies(peers)
    # OUT.json, OUT.md and the plots go beside the prefix (or into the folder): refused before minutes of runs
    check_writable(out / "latest" if out.is_dir() else out, "the report")
    for spec in options.models:
        longest = max(options.prompt_lens) + decode_tokens + 8  # + the warm-up's margin
        if longest > spec.context:  # the bench compiles every model, the default one too, with this window
            raise WebrtError(f"--prompt-lens up to {max(options.prompt_lens)} plus --decode-tokens {decode_tokens} "
                             f"exceed {spec.name}'s context window of {spec.context}")
    reporter = StageReporter()
    with tempfile.TemporaryDirectory(prefix="webrt-bench-") as tmp:
        try:
            results = run_bench(options, workdir or Path(tmp), stage=reporter)
        except BaseException:
            reporter.finish(ok=False)
            raise
        reporter.finish()
    results = {"command": "webrt " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
               "date": time.strftime("%Y-%m-%d %H:%M"), "cpus": __import__("os").cpu_count(),
               "browser_version": _browser_version(),
               "options": {"devices": options.devices, "threads": options.threads, "peers": options.peers,
                           "prompt_lens": options.prompt_lens, "decode_tokens": options.decode_tokens,
                           "budget_s": options.budget_s, "models": [m.name for m in options.models]},
               **results}
    analyse(results)
    paths = write_report(results, out)
    for key, t in results["targets"].items():
        if t["ratio"] is not None:
            verdict = "met" if t["met"] else f"missed by {t['target'] / t['ratio']:.2f}x"
            console.print(f"{key}: {t['ratio']:.2f} (target {t['target']}, {verdict})")
    console.print(f"report written to {paths['md']} ({results['wall_s'] / 60:.1f} min)")
    agreement = results["agreement"]
    if not agreement["ok"]:
        first = agreement["mismatches"][0]
        raise BenchFlagged(f"greedy tokens disagree in {len(agreement['mismatches'])} of {agreement['compared']} "
                           f"runs (first: {first['model']}, {first['prompt_tokens']}-token prompt, {first['run']}); "
                           f"the report is flagged: {paths['md']}")
