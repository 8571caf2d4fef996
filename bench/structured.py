"""Structured output on the default model: the 20 prompts x 20 JSON Schemas of
bench/structured_cases.json, constrained (response_format json_schema, xgrammar's mask applied on
the device) on WebGPU and on wasm, validated with the `jsonschema` package, and the same prompts
unconstrained for contrast. Then the cost: decode tokens/s with the schema against without, on wasm
with 1 and 2 threads, the time per token in the grammar engine (xgrammar filling the mask and
accepting the token), and in the mask kernel (`fused_mask_tokens_penalize`: the mask fused with the
penalties, from the wasm executor's per-function profile and the WebGPU one).

    python bench/structured.py [--backends webgpu,wasm-1,wasm-2] [--artifact DIR] [--cases N]
    # writes bench/structured.json and bench/structured.md

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
import jsonschema

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.browser import shell_page  # noqa: E402
from webrt.build_artifact import compile_model  # noqa: E402

CASES = json.loads((ROOT / "bench" / "structured_cases.json").read_text())
MAX_TOKENS = 160
PROFILE_STEPS = {"wasm": 32, "webgpu": 3}

# One case per call, on an engine kept on the page, so a long SwiftShader run records as it goes.
CASE_JS = """
async ([url, device, threads, c, maxTokens, free]) => {
  window.benchEngine ??= await window.webrt.createEngine(url, { device, threads: threads ?? undefined });
  const engine = window.benchEngine;
  const messages = [{ role: "user", content: c.prompt }];
  const runs = [["schema", { response_format: { type: "json_schema", json_schema: { name: c.name, schema: c.schema } } }]];
  if (free) runs.push(["free", {}]);
  const rows = [];
  // no resetChat: the chat template's system prompt is a shared prefix that need not run again
  for (const [mode, extra] of runs) {
    const reply = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: maxTokens, ...extra });
    const x = reply.usage.extra;
    rows.push({ name: c.name, mode, text: reply.choices[0].message.content, finish: reply.choices[0].finish_reason,
                tokens: reply.usage.completion_tokens, decode_tokens_per_s: x.decode_tokens_per_s,
                decode_ms: x.total_ms - x.time_to_first_token_ms, grammar: x.grammar });
  }
  return rows;
}
"""

# The mask kernel: per-function times of decode steps (the mask is always applied; without a grammar
# it allows every token).
PROFILE_JS = """
async ([steps]) => {
  const engine = window.benchEngine;
  const model = engine.model;
  const vocab = model.manifest.model.config.vocab_size;
  const profile = {};
  const sampler = new window.webrt.Sampler({ temperature: 0 }, []);
  let token = 1;
  for (let s = 0; s < steps; s++) {
    const [out] = await model.run("decode", {
      input_ids: { data: Int32Array.of(token), shape: [1, 1] }, offset: { values: [s] },
      token_mask: { data: window.webrt.allowAllMask(vocab), shape: [Math.ceil(vocab / 32)] }, ...sampler.inputs(),
    }, { readback: [0], profile });
    token = out.data[0];
  }
  const info = { device: model.device, threads: model.threads, adapter: model.adapter };
  engine.unload();
  return { profile, info };
}
"""


def validates(text: str, schema: dict) -> tuple[bool, bool]:
    """(parses as JSON, validates against the schema)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return False, False
    try:
        jsonschema.validate(value, schema)
        return True, True
    except jsonschema.ValidationError:
        return True, False


def run_backend(artifact: Path, backend: str, cases: list[dict], free: bool, partial: Path) -> dict:
    device, _, threads = backend.partition("-")
    schemas = {c["name"]: c["schema"] for c in cases}
    out = {"rows": []}
    with shell_page(artifact) as (page, url):
        for case in cases:
            rows = page.evaluate(CASE_JS, [url, device, int(threads) if threads else None, case, MAX_TOKENS, free])
            for row in rows:
                row["parses"], row["valid"] = validates(row["text"], schemas[row["name"]])
            out["rows"] += rows
            partial.write_text(json.dumps(out))
            print(backend, case["name"], [(r["mode"], r["valid"], r["tokens"]) for r in rows], flush=True)
        out.update(page.evaluate(PROFILE_JS, [PROFILE_STEPS[device]]))
    steps = PROFILE_STEPS[device]
    out["profile_ms_per_step"] = {k: v / steps for k, v in sorted(out["profile"].items(), key=lambda kv: -kv[1])}
    return out


def decode_rate(rows: list[dict], mode: str) -> float:
    """Decode tokens/s over all replies of a mode: tokens after the first over the time after it."""
    picked = [r for r in rows if r["mode"] == mode and r["tokens"] > 1]
    return sum(r["tokens"] - 1 for r in picked) / (sum(r["decode_ms"] for r in picked) / 1000)


def summarize(results: dict) -> dict:
    summary = {}
    for backend, out in results.items():
        rows = out["rows"]
        schema_rows = [r for r in rows if r["mode"] == "schema"]
        free_rows = [r for r in rows if r["mode"] == "free"]
        grammar_ms = sum(r["grammar"]["mask_ms"] + r["grammar"]["accept_ms"] for r in schema_rows)
        tokens = sum(r["tokens"] for r in schema_rows)
        per_step = out.get("profile_ms_per_step", {})  # absent for a run stopped before its profile
        decode_step_ms = sum(per_step.values())
        s = {
            "constrained_valid": sum(r["valid"] for r in schema_rows), "constrained": len(schema_rows),
            "free_valid": sum(r["valid"] for r in free_rows), "free_parses": sum(r["parses"] for r in free_rows),
            "free": len(free_rows),
            "schema_decode_tokens_per_s": decode_rate(rows, "schema"),
            "grammar_ms_per_token": grammar_ms / tokens,
            "mask_kernel_ms_per_step": per_step.get("fused_mask_tokens_penalize"),
            "decode_step_ms_profiled": decode_step_ms,
        }
        if free_rows:
            s["free_decode_tokens_per_s"] = decode_rate(rows, "free")
            s["slowdown"] = 1 - s["schema_decode_tokens_per_s"] / s["free_decode_tokens_per_s"]
        summary[backend] = s
    return summary


def write_markdown(path: Path, report: dict) -> None:
    lines = ["# Structured output, default model", "",
             f"SmolLM2-135M-Instruct Q4_1 GGUF -> q4f32, context 512. Greedy, max_tokens {MAX_TOKENS}. The schemas "
             "and prompts: bench/structured_cases.json; validated with `jsonschema`. Headless Chromium; WebGPU on "
             "SwiftShader.", ""]
    lines += [f"- `{r['command']}` ({r['date']}): {', '.join(r['backends'])}; load average before {r['load_before']}, "
              f"after {r['load_after']}." for r in report["runs"]]
    lines += ["",
             "| backend | schema replies valid | unconstrained valid (parse) | decode tok/s with schema | "
             "unconstrained | slower by | xgrammar ms/token | mask kernel ms/step | decode step ms (profiled) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for backend, s in report["summary"].items():
        free = f"{s['free_valid']}/{s['free']} ({s['free_parses']})" if s["free"] else "-"
        free_rate = f"{s['free_decode_tokens_per_s']:.2f}" if "free_decode_tokens_per_s" in s else "-"
        slower = f"{100 * s['slowdown']:.1f}%" if "slowdown" in s else "-"
        mask = f"{s['mask_kernel_ms_per_step']:.3f}" if s["mask_kernel_ms_per_step"] is not None else "-"
        step = f"{s['decode_step_ms_profiled']:.1f}" if s["decode_step_ms_profiled"] else "-"
        name = f"{backend} (stopped after {s['constrained']} cases)" if report["results"][backend].get("partial") else backend
        lines.append(f"| {name} | {s['constrained_valid']}/{s['constrained']} | {free} | "
                     f"{s['schema_decode_tokens_per_s']:.2f} | {free_rate} | {slower} | {s['grammar_ms_per_token']:.3f} | "
                     f"{mask} | {step} |")
    lines += ["", "Decode tok/s: tokens after the first over the time after the first, summed over the replies "
              "(the replies with a schema are 14-144 tokens; unconstrained ones often run to max_tokens). xgrammar ms/token: `getNextTokenBitmask` "
              "plus `acceptToken`, on the engine's thread between two steps. The mask kernel is fused with the "
              "penalties (one elementwise pass over the vocabulary); its time is from the executors' per-function "
              "profile of decode steps, which synchronizes after each function.", ""]
    shown = next((b for b, out in report["results"].items() if any(r["mode"] == "free" for r in out["rows"])),
                 next(iter(report["results"])))
    first = report["results"][shown]
    lines += [f"## Replies ({shown})", "", "| case | with schema | valid | unconstrained | valid |", "|---|---|---|---|---|"]
    rows = {(r["name"], r["mode"]): r for r in first["rows"]}
    for c in CASES[:len({r["name"] for r in first["rows"]})]:
        s, f = rows.get((c["name"], "schema")), rows.get((c["name"], "free"))
        cell = lambda r: "`" + r["text"].replace("\n", "\\n").replace("|", "\\|")[:120] + "`" if r else "-"  # noqa: E731
        lines.append(f"| {c['name']} | {cell(s)} | {s['valid'] if s else '-'} | {cell(f)} | {f['valid'] if f else '-'} |")
    path.write_text("\n".join(lines) + "\n")


@click.command()
@click.option("--backends", default="wasm-1,wasm-2,webgpu", show_default=True)
@click.option("--artifact", type=click.Path(path_type=Path), default=None, help="A compiled default model (else compiled here).")
@click.option("--cases", "n_cases", type=int, default=len(CASES), show_default=True)
@click.option("--free-on", default="wasm-1,wasm-2", show_default=True,
              help="Backends that also run the prompts unconstrained (SwiftShader is too slow for both).")
@click.option("--out", type=click.Path(path_type=Path), default=ROOT / "bench" / "structured")
@click.option("--add-partial", default=None, metavar="BACKEND=FILE",
              help="Add the cases a stopped run of BACKEND recorded (its <backend>.partial.json) instead of running.")
@click.option("--skip", type=int, default=0, show_default=True,
              help="Start at this case (also with --add-partial); the backend's rows recorded earlier for the cases before it are kept "
                   "(SwiftShader's 20 cases take longer than one sitting).")
def main(backends: str, artifact: Path | None, n_cases: int, free_on: str, out: Path, add_partial: str | None, skip: int):
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    if add_partial:
        backend, _, file = add_partial.partition("=")
        backends, partial = "", {backend: {**json.loads(Path(file).read_text()), "partial": True}}
    else:
        partial = {}
    earlier = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    with tempfile.TemporaryDirectory(prefix="webrt-structured-") as tmp:
        if artifact is None and backends:
            artifact = compile_model(None, Path(tmp) / "smollm2", "q4f32", 512)
        results = dict(partial)
        for backend in filter(None, backends.split(",")):
            t0 = time.time()
            # kept outside tmp: a stopped run's cases can still be added with --add-partial
            partial_file = Path(tempfile.gettempdir()) / f"webrt-structured-{backend}.partial.json"
            results[backend] = run_backend(artifact, backend, CASES[skip:n_cases], backend in free_on.split(","), partial_file)
            print(f"{backend}: {time.time() - t0:.0f} s", json.dumps(summarize({backend: results[backend]})[backend]), flush=True)
    if skip:  # the cases before `skip` keep the rows recorded earlier (a run, or an added partial one)
        kept = {c["name"] for c in CASES[:skip]}
        for backend, result in results.items():
            before = [r for r in earlier.get("results", {}).get(backend, {}).get("rows", []) if r["name"] in kept]
            result["rows"] = before + result["rows"]
    # backends run separately (SwiftShader takes long) add to the results already written
    runs = [*earlier.get("runs", []), {"backends": list(results), "command": "python bench/structured.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": load_before,
            "load_after": ", ".join(f"{x:.2f}" for x in os.getloadavg())}]
    results = {**earlier.get("results", {}), **results}
    report = {"runs": runs, "summary": summarize(results), "results": results}
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    write_markdown(out.with_suffix(".md"), report)
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
