"""WebGPU (SwiftShader) quantized matmuls: each sub-block's scale and offset decoded for every
weight (the decode stages inlined, as dlight's Fallback does) against once per 32-column step
(schedule.DecodeOnce, the portable default), per GGUF type, for a decode GEMV and a 16-token
matmul; GGUF Q4_1 in the group layout (f32 scale and min, the same numbers) beside them. With
--model, also the default model (SmolLM2-135M Q4_1) with its matrices in the group layout and in
Q4_1's own layout, loaded in one page and run alternately.

    python bench/webgpu_qdecode.py [--rounds 3]            # writes bench/webgpu_qdecode.json and .md
    python bench/webgpu_qdecode.py --model --work /tmp/x   # adds the default model (two compiles,
                                                           # kept in --work for the next run)

Not a timed test: the load average is recorded with the numbers. Times are the fastest of each
entry's runs (median in the JSON); a run is model.run(): upload of x and the weight parts, the
kernel, and the read-back.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tvm.relax.frontend import nn  # noqa: E402
from tvm.s_tir import dlight as dl  # noqa: E402

import webrt.compile.schedule as schedule  # noqa: E402
import webrt.models.quantized as quantized  # noqa: E402
from tests.test_weight_types import reference, synthetic_blocks  # noqa: E402
from webrt.artifact import write_artifact  # noqa: E402
from webrt.browser import evaluate, shell_page  # noqa: E402
from webrt.compile import compile_module  # noqa: E402
from webrt.quantize import from_gguf_blocks  # noqa: E402
from webrt.weight_types import TYPES, pack  # noqa: E402

ROWS, COLS = 1536, 512  # an MLP up/gate matrix (the default model's is 1536 x 576; K-quants need 256 | K)
TOKENS = 16             # the matmul's rows of x (a short prefill)
KINDS = ["group-Q4_1", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
SCHEDULES = {"inline": lambda _s="portable": [dl.gpu.Fallback()], "once": schedule.gpu_rules}
PROMPT = "What is the capital of France?"
MAX_TOKENS = 8


def _weight(kind: str, parts: list):
    if kind.startswith("group-"):
        return SimpleNamespace(wtype=None, bits=4, rows=ROWS, cols=COLS, qweight=parts[0], scales=parts[1],
                               mins=parts[2])
    return SimpleNamespace(wtype=TYPES[kind], rows=ROWS, cols=COLS, tensors=lambda: parts)


def _arrays(kind: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The weight's parts and its dequantized float32 matrix (gguf.quants)."""
    name = kind.removeprefix("group-")
    raw = synthetic_blocks(name, ROWS, COLS, seed=KINDS.index(kind))
    if kind.startswith("group-"):
        q = from_gguf_blocks(raw, name)
        parts = {"qweight": q.packed(), "scales": q.scales, "mins": q.mins}
    else:
        parts = pack(TYPES[name], raw)
    return parts, reference(name, raw)


def _entry(kind: str, names: list[str]):
    def entry(self, x, *parts):
        return quantized.quantized_matmul(x, _weight(kind, list(parts)))

    # the exporter binds the spec's inputs by the method's parameter names
    entry.__signature__ = inspect.Signature([inspect.Parameter(a, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                             for a in ["self", "x", *names]])
    return entry


class Kernels(nn.Module):
    pass


def compile_kernels(out: Path, arrays: dict) -> dict:
    """One artifact per schedule under `out`; returns entry -> (kind, tokens)."""
    specs, entries = {}, {}
    for kind in KINDS:
        parts = arrays[kind][0]
        key = kind.lower().replace("-", "_")
        for tokens, label in ((1, "gemv"), ("n", "matmul")):
            entry = f"{label}_{key}"
            setattr(Kernels, entry, _entry(kind, list(parts)))
            specs[entry] = {"x": nn.spec.Tensor([1, tokens, COLS], "float32"),
                            **{p: nn.spec.Tensor(list(a.shape), str(a.dtype)) for p, a in parts.items()}}
            entries[entry] = (kind, 1 if tokens == 1 else TOKENS)
    spec = {e: {**s, "$": {"param_mode": "none", "effect_mode": "none"}} for e, s in specs.items()}
    original = schedule.gpu_rules
    for name, rules in SCHEDULES.items():
        mod, _ = Kernels().export_tvm(spec=spec)
        schedule.gpu_rules = rules
        try:
            compiled = compile_module(mod, {e: list(s) for e, s in specs.items()}, wasm=False, candidates=False)
        finally:
            schedule.gpu_rules = original
        write_artifact(out / name, {"name": f"qdecode-{name}"}, compiled, {})
    return entries


_KERNELS_JS = """
async ([base, names, jobs, rounds, reps], stage) => {
  try {
    const models = {};
    for (const name of names) {
      stage(`loading ${name}`);
      models[name] = await window.webrt.loadModel(`${base}${name}/`, { device: "webgpu", tuning: false });
    }
    const times = {}, outputs = {};
    for (let r = 0; r < rounds; r++) {
      for (const [entry, inputs] of jobs) {
        const typed = {};
        for (const [name, x] of Object.entries(inputs)) {
          const Typed = { uint32: Uint32Array, float32: Float32Array }[x.dtype];
          typed[name] = { data: Typed.from(x.data), shape: x.shape };
        }
        // alternate which schedule goes first, so neither always runs on a warmer machine
        const order = r % 2 ? [...names].reverse() : names;
        for (const name of order) {
          stage(`round ${r + 1}: ${entry} (${name})`);
          const key = `${entry}/${name}`;
          const [out] = await models[name].run(entry, typed);  // the first call creates the pipeline
          if (!(key in outputs)) outputs[key] = Array.from(out.data);
          for (let i = 0; i < reps; i++) {
            const t0 = performance.now();
            await models[name].run(entry, typed);
            (times[key] ??= []).push(performance.now() - t0);
          }
        }
      }
    }
    for (const m of Object.values(models)) m.unload();
    return { times, outputs };
  } catch (err) {
    return { error: `${err.name}: ${err.message}` };
  }
}
"""


def _input(array: np.ndarray) -> dict:
    return {"data": array.ravel().tolist(), "shape": list(array.shape), "dtype": str(array.dtype)}


def bench_kernels(work: Path, rounds: int, reps: int) -> list[dict]:
    arrays = {kind: _arrays(kind) for kind in KINDS}
    entries = compile_kernels(work / "kernels", arrays)
    rng = np.random.default_rng(0)
    xs = {tokens: rng.standard_normal((1, tokens, COLS), dtype=np.float32) for tokens in (1, TOKENS)}
    jobs = [(entry, {"x": _input(xs[tokens]), **{p: _input(a) for p, a in arrays[kind][0].items()}})
            for entry, (kind, tokens) in entries.items()]
    with shell_page(work / "kernels") as (page, url):
        result = evaluate(page, _KERNELS_JS, [url, list(SCHEDULES), jobs, rounds, reps])
    rows = []
    for entry, (kind, tokens) in entries.items():
        ref = xs[tokens] @ arrays[kind][1].T
        row = {"entry": entry, "kind": kind, "tokens": tokens, "rows": ROWS, "cols": COLS,
               "weight_bytes": int(sum(a.nbytes for a in arrays[kind][0].values()))}
        for name in SCHEDULES:
            t = result["times"][f"{entry}/{name}"]
            got = np.array(result["outputs"][f"{entry}/{name}"], np.float32).reshape(ref.shape)
            row[name] = {"min_ms": min(t), "median_ms": float(np.median(t)),
                         "max_abs_error": float(np.abs(got - ref).max())}
        rows.append(row)
    return rows


# ---- the default model in both layouts ---------------------------------------------------------------

def compile_default(out: Path, layout: str) -> float:
    """The default model with GGUF Q4_1 in `layout` ("group" or "own"); seconds taken (0 if kept)."""
    if (out / "manifest.json").exists():
        return 0.0
    from webrt.build_artifact import compile_model

    saved = dict(quantized.GROUP_LAYOUT_BITS)
    quantized.GROUP_LAYOUT_BITS.clear()
    quantized.GROUP_LAYOUT_BITS.update({"Q4_0": 4, "Q4_1": 4} if layout == "group" else {})
    t0 = time.time()
    try:
        compile_model(None, out, "q4f32", context_window=512, tuning_candidates=False)
    finally:
        quantized.GROUP_LAYOUT_BITS.clear()
        quantized.GROUP_LAYOUT_BITS.update(saved)
    return time.time() - t0


_MODEL_JS = """
async ([base, names, request, rounds], stage) => {
  try {
    const engines = {};
    for (const name of names) {
      stage(`loading ${name}`);
      engines[name] = await window.webrt.createEngine(`${base}${name}/`, { device: "webgpu", tuning: false });
    }
    const runs = [];
    for (let r = 0; r < rounds; r++) {
      for (const name of r % 2 ? [...names].reverse() : names) {
        stage(`round ${r + 1}: ${name}`);
        const out = await engines[name].chat.completions.create(request);
        const extra = out.usage.extra;
        runs.push({ name, round: r, token_ids: extra.token_ids, prompt_tokens: out.usage.prompt_tokens,
                    prefill_tokens_per_s: extra.prefill_tokens_per_s, decode_tokens_per_s: extra.decode_tokens_per_s });
      }
    }
    for (const e of Object.values(engines)) e.unload();
    return { runs };
  } catch (err) {
    return { error: `${err.name}: ${err.message}` };
  }
}
"""


def bench_model(work: Path, rounds: int) -> dict:
    names = ["group", "own"]
    compiled = {name: compile_default(work / name, name) for name in names}
    request = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS, "temperature": 0}
    with shell_page(work) as (page, url):
        result = evaluate(page, _MODEL_JS, [url, names, request, rounds])
    return {"compile_s": compiled, "runs": result["runs"]}


def _load() -> float:
    return os.getloadavg()[0]


def _fmt(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def write_report(out: Path, data: dict) -> None:
    lines = ["# WebGPU quantized matmuls: decode stages inlined vs once per 32 weights (SwiftShader)", "",
             f"`{data['command']}` on {data['date']}, load average {data['load_before']:.1f} before, "
             f"{data['load_after']:.1f} after; {data['rounds']} rounds of {data['reps']} runs per entry, "
             "schedules alternating; fastest run (median in the JSON). A run is `model.run()`: upload of x "
             "and the weight parts, the kernel, read-back.", "",
             "*inline*: dlight's Fallback alone (one thread per output), which inlines the decode stages, so "
             "every weight decodes its sub-block's scale and offset (f16 halves with their subnormal branch, "
             "6-bit packed K-quant pairs). *once*: schedule.DecodeOnce, the portable default since this run, "
             "the same loops with the decode stages computed into registers once per 32-column step. "
             f"Matrix {ROWS} x {COLS}, synthetic GGUF blocks; *group-Q4_1* is the same Q4_1 blocks in the group "
             "layout (f32 scale and min: no decode stages, so both schedules are the same). Max abs error "
             "against gguf.quants dequantization then x @ W^T.", "",
             "| kind | weight bytes | GEMV inline ms | GEMV once ms | speed-up | matmul x16 inline ms | "
             "matmul x16 once ms | speed-up | max abs error (once) |",
             "|---|---|---|---|---|---|---|---|---|"]
    by_kind = {}
    for row in data["kernels"]:
        by_kind.setdefault(row["kind"], {})[row["tokens"]] = row
    for kind, rows in by_kind.items():
        g, m = rows[1], rows[TOKENS]
        err = max(g["once"]["max_abs_error"], m["once"]["max_abs_error"])
        lines.append(f"| {kind} | {g['weight_bytes']:,} | {_fmt(g['inline']['min_ms'])} | {_fmt(g['once']['min_ms'])} "
                     f"| {g['inline']['min_ms'] / g['once']['min_ms']:.2f}x | {_fmt(m['inline']['min_ms'])} "
                     f"| {_fmt(m['once']['min_ms'])} | {m['inline']['min_ms'] / m['once']['min_ms']:.2f}x | {err:.2e} |")
    model = data.get("model")
    if model:
        lines += ["", "## The default model: GGUF Q4_1 in the group layout vs its own layout", "",
                  f"SmolLM2-135M-Instruct Q4_1 compiled twice at this commit (context window 512, no tuning "
                  "candidates; `tuning: false`), both loaded in one page and run alternately: "
                  f"\"{PROMPT}\", greedy, {MAX_TOKENS} new tokens. Group layout: f32 scale and min per 32 "
                  "weights; own layout: the GGUF's f16 halves, decoded once per 32 weights (DecodeOnce).", "",
                  "| layout | round | prompt tokens | prefill tok/s | decode tok/s | decode s/token | tokens |",
                  "|---|---|---|---|---|---|---|"]
        for run in model["runs"]:
            lines.append(f"| {run['name']} | {run['round'] + 1} | {run['prompt_tokens']} | "
                         f"{run['prefill_tokens_per_s']:.2f} | {run['decode_tokens_per_s']:.3f} | "
                         f"{1 / run['decode_tokens_per_s']:.2f} | {run['token_ids']} |")
        for key in ("prefill_tokens_per_s", "decode_tokens_per_s"):
            best = {n: max(r[key] for r in model["runs"] if r["name"] == n) for n in ("group", "own")}
            lines.append("")
            lines.append(f"Best {key.replace('_', ' ')}: own / group = {best['own'] / best['group']:.2f}x")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


@click.command()
@click.option("--rounds", default=3, show_default=True)
@click.option("--reps", default=3, show_default=True, help="timed runs per entry and round")
@click.option("--model", "with_model", is_flag=True, help="also the default model in both layouts")
@click.option("--model-rounds", default=2, show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=None,
              help="where the artifacts go (kept; default: a fresh temporary folder)")
@click.option("--out", type=click.Path(path_type=Path), default=ROOT / "bench" / "webgpu_qdecode.json")
def main(rounds: int, reps: int, with_model: bool, model_rounds: int, work: Path | None, out: Path) -> None:
    work = work or Path(tempfile.mkdtemp(prefix="webrt-qdecode-"))
    data = {"command": "python bench/webgpu_qdecode.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": _load(),
            "rounds": rounds, "reps": reps}
    data["kernels"] = bench_kernels(work, rounds, reps)
    if with_model:
        data["model"] = bench_model(work / "model", model_rounds)
    data["load_after"] = _load()
    out.write_text(json.dumps(data, indent=1) + "\n")
    write_report(out, data)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
