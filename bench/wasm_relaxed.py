"""The default model (SmolLM2-135M, q4f32) on the relaxed-SIMD wasm builds against the plain SIMD128
builds, in one headless Chromium page per thread count: prefill of a 213-token prompt and greedy
decode, the two builds loaded side by side and taking turns round after round, so a busy neighbour
slows both alike. Also the greedy tokens of each build (they differ only by fused rounding).

    python bench/wasm_relaxed.py [--rounds 3] [--decode 32] [--threads 1,2] [--int-dot]
    # writes bench/wasm_relaxed.json and .md (bench/wasm_relaxed_int_dot.* with --int-dot)

The artifact is compiled once into a temporary folder (q4f32, no tuning candidates, as
webrt/bench/native.py does). Not a timed test: the load average is recorded with the numbers.
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

from webrt.browser import shell_page  # noqa: E402
from webrt.build_artifact import compile_model  # noqa: E402

PROMPT_TOKENS = 213  # the prompt length of bench/native.md

PAGE_JS = """
async ([url, builds, threads, prompt, decode, rounds]) => {
  const models = {};
  for (const build of builds) models[build] = await window.webrt.loadModel(url, { device: "wasm", threads, wasmBuild: build });
  const vocab = models[builds[0]].manifest.model.config.vocab_size;
  const ids = Array.from({ length: prompt }, (_, i) => 1 + (i * 7919) % (vocab - 1));
  const inputs = (tokens, offset) => window.webrt.greedyInputs(vocab, tokens, offset);
  const runOnce = async (model) => {
    let t0 = performance.now();
    let [tok] = await model.run("prefill", inputs(ids, 0), { readback: [0] });
    const prefillMs = performance.now() - t0;
    const tokens = [tok.data[0]];
    t0 = performance.now();
    for (let s = 1; s < decode; s++) {
      [tok] = await model.run("decode", inputs([tokens[tokens.length - 1]], prompt + s - 1), { readback: [0] });
      tokens.push(tok.data[0]);
    }
    return { prefill_ms: prefillMs, decode_ms_per_token: (performance.now() - t0) / (decode - 1), tokens };
  };
  for (const build of builds) await runOnce(models[build]);  // warm-up: JIT tiers, allocation
  const out = Object.fromEntries(builds.map((b) => [b, []]));
  for (let r = 0; r < rounds; r++) for (const build of builds) out[build].push(await runOnce(models[build]));
  const names = Object.fromEntries(builds.map((b) => [b, models[b].wasmBuild]));
  for (const m of Object.values(models)) m.unload();
  return { runs: out, names };
}
"""


@click.command()
@click.option("--rounds", default=3, show_default=True)
@click.option("--decode", default=32, show_default=True, help="greedy tokens per run (the first from the prefill)")
@click.option("--threads", "thread_list", default="1,2", show_default=True)
@click.option("--int-dot", is_flag=True, help="the artifact's 4-bit matmuls on int8 activations (int_dot.py)")
@click.option("--artifact", type=click.Path(path_type=Path), default=None,
              help="a compiled default-model artifact to reuse (else one is compiled into a temporary folder)")
def main(rounds: int, decode: int, thread_list: str, int_dot: bool, artifact: Path | None) -> None:
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="webrt-relaxed-") as tmp:
        if artifact is None:
            artifact = compile_model(None, Path(tmp) / "artifact", "q4f32", tuning_candidates=False, int_dot=int_dot)
        for threads in (int(t) for t in thread_list.split(",")):
            builds = ["simd", "relaxed"] if threads == 1 else ["threads", "relaxed_threads"]
            with shell_page(artifact) as (page, url):
                result = page.evaluate(PAGE_JS, [url, builds, threads, PROMPT_TOKENS, decode, rounds])
            for build in builds:
                runs = result["runs"][build]
                rows.append({"threads": threads, "build": result["names"][build],
                             "prefill_tokens_per_s": statistics.median(PROMPT_TOKENS * 1000 / r["prefill_ms"] for r in runs),
                             "decode_tokens_per_s": statistics.median(1000 / r["decode_ms_per_token"] for r in runs),
                             "rounds": [{k: v for k, v in r.items() if k != "tokens"} for r in runs],
                             "tokens": runs[0]["tokens"]})
            print(json.dumps(rows[-2:])[:400], flush=True)
    name = "wasm_relaxed_int_dot" if int_dot else "wasm_relaxed"
    report = {"command": "python bench/wasm_relaxed.py" + " ".join([""] + sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "int_dot": int_dot,
              "prompt_tokens": PROMPT_TOKENS, "decode_tokens": decode, "rounds": rounds,
              "load_before": load_before, "load_after": os.getloadavg(), "results": rows}
    (ROOT / "bench" / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (ROOT / "bench" / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    kind = "int-dot 4-bit matmuls (--int-dot)" if r["int_dot"] else "exact f32 4-bit matmuls"
    lines = [f"# Default model: relaxed-SIMD vs SIMD128 wasm builds ({r['date']})", "",
             f"Command: `{r['command']}`. SmolLM2-135M-Instruct q4f32, {kind}, headless Chromium; "
             f"a {r['prompt_tokens']}-token prompt, then {r['decode_tokens']} greedy tokens. Per thread count, both "
             f"builds in one page, taking turns for {r['rounds']} rounds (medians).",
             f"Load average before: {r['load_before'][0]:.1f}, after: {r['load_after'][0]:.1f} "
             "(a shared 2-core machine: compare the builds within one thread count).", "",
             "| threads | build | prefill tok/s | decode tok/s | relaxed / plain (prefill, decode) | greedy tokens equal to plain |",
             "|---|---|---|---|---|---|"]
    by = {}
    for row in r["results"]:
        by.setdefault(row["threads"], []).append(row)
    for threads, (plain, relaxed) in by.items():
        same = next((i for i, (a, b) in enumerate(zip(plain["tokens"], relaxed["tokens"])) if a != b), len(plain["tokens"]))
        lines.append(f"| {threads} | {plain['build']} | {plain['prefill_tokens_per_s']:.1f} | {plain['decode_tokens_per_s']:.1f} | | |")
        lines.append(f"| {threads} | {relaxed['build']} | {relaxed['prefill_tokens_per_s']:.1f} | "
                     f"{relaxed['decode_tokens_per_s']:.1f} | {relaxed['prefill_tokens_per_s'] / plain['prefill_tokens_per_s']:.2f}x, "
                     f"{relaxed['decode_tokens_per_s'] / plain['decode_tokens_per_s']:.2f}x | {same} of {len(plain['tokens'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
