"""Chat benchmark for the default model on WebGPU (SwiftShader here) and on wasm with 1 and 2
threads: load time split into download and pipeline creation (wasm: module instantiation and the
thread pool), prefill tokens/s for 32- and 128-token prompts, time to first token, decode tokens/s.

    python bench/chat.py [--backends webgpu,wasm-1,wasm-2]   # writes bench/chat.json and chat.md

Not a timed test: the load average is recorded with the numbers.
"""

from __future__ import annotations

import json
import os

import click
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.browser import shell_page  # noqa: E402
from webrt.build_artifact import compile_model  # noqa: E402

DECODE_TOKENS = 16

BENCH_JS = """
async ([url, lengths, decodeTokens, device, threads]) => {
  const stages = {};
  let last = performance.now();
  const model = await window.webrt.loadModel(url, { device, threads: threads ?? undefined, onProgress: ({ stage }) => {
    const now = performance.now();
    if (!(stage in stages)) stages[stage] = now - last;
    last = now;
  } });
  const gen = new window.webrt.Generator(model, { prefillChunk: 128 });
  const rows = [];
  for (const n of lengths) {
    gen.reset();
    const prompt = Array.from({ length: n }, (_, i) => 100 + ((i * 37) % 4000));
    const sampler = new window.webrt.Sampler({ temperature: 0 }, prompt);
    const t0 = performance.now();
    let { token } = await gen.prefill(prompt, sampler);
    const ttft = performance.now() - t0;
    const t1 = performance.now();
    for (let i = 1; i < decodeTokens; i++) token = await gen.decode(token, sampler);
    const decodeMs = (performance.now() - t1) / (decodeTokens - 1);
    rows.push({ prompt_tokens: n, ttft_ms: ttft, prefill_tokens_per_s: n / (ttft / 1000),
                decode_tokens_per_s: 1000 / decodeMs });
  }
  const info = { device: model.device, adapter: model.adapter, timings: model.timings, stages,
                 threads: model.threads, memory_bytes: model.gpuBytes };
  model.unload();
  return { rows, info };
}
"""


@click.command()
@click.option("--backends", default="webgpu,wasm-1,wasm-2", show_default=True,
              help="webgpu, or wasm-N for the wasm kernels on N threads")
def main(backends: str) -> None:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        artifact = compile_model(None, Path(work) / "smollm2", "q4f32", 1024)
        compile_s = time.perf_counter() - t0
        results = {}
        for backend in backends.split(","):
            device, _, threads = backend.partition("-")
            with shell_page(artifact) as (page, url):
                results[backend] = page.evaluate(BENCH_JS, [url, [32, 128], DECODE_TOKENS, device,
                                                            int(threads) if threads else None])
    report = {
        "command": f"python bench/chat.py --backends {backends}", "date": time.strftime("%Y-%m-%d %H:%M"),
        "model": "SmolLM2-135M-Instruct Q4_1 GGUF -> q4f32, context 1024, portable WebGPU schedules, "
                 "wasm kernels with the CPU schedules (SIMD128; the threads build for 2 threads)",
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "compile_s": round(compile_s, 1),
        "devices": {device: {
            "adapter": r["info"]["adapter"], "threads": r["info"]["threads"],
            "memory_mb": round(r["info"]["memory_bytes"] / 1e6, 1),
            "load": {"download_and_upload_ms": round(r["info"]["timings"]["load_ms"]),
                     "pipelines_ms": round(r["info"]["timings"]["pipelines_ms"])},
            "runs": [{k: round(v, 2) for k, v in row.items()} for row in r["rows"]],
        } for device, r in results.items()},
    }
    (ROOT / "bench" / "chat.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Chat benchmark, default model ({report['date']})", "",
             f"Command: `{report['command']}`. {report['model']}. Headless Chromium; WebGPU runs on SwiftShader "
             "(no GPU on this machine).",
             f"Load average before: {load_before[0]:.2f}, after: {report['loadavg_after'][0]:.2f}. "
             f"Compile (both backends): {report['compile_s']} s.", "",
             "| backend | download+upload ms | pipelines / instantiate ms | memory MB | prompt tokens "
             "| time to first token ms | prefill tok/s | decode tok/s |", "|---|---|---|---|---|---|---|---|"]
    for device, d in report["devices"].items():
        for row in d["runs"]:
            lines.append(f"| {device} | {d['load']['download_and_upload_ms']} | {d['load']['pipelines_ms']} | "
                         f"{d['memory_mb']} | "
                         f"{row['prompt_tokens']} | {row['ttft_ms']:.0f} | {row['prefill_tokens_per_s']:.2f} | "
                         f"{row['decode_tokens_per_s']:.2f} |")
    (ROOT / "bench" / "chat.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
