"""`webrt tune`: time the schedule candidates in headless Chromium (web/tuner.js) and ship the winners
inside the artifact as its tuning DB, so visitors on the same kind of device skip tuning.

One page load measures the default schedules' decode (and optionally prefill) throughput, a second
one tunes (with `force`, ignoring stored winners) and measures again with the winners; the tuning
DB is exported from the browser's store and baked into the artifact (artifact.bake_tuning_db).
"""

from __future__ import annotations

import json
from pathlib import Path

from .artifact import bake_tuning_db, read_manifest
from .browser import evaluate, shell_page
from .errors import WebrtError

# Loads the model (with the given tuning option), runs `prefill` tokens once and `steps` decode
# steps, and reports throughput, the tuning report, and (export) the browser's tuning DB.
_MEASURE_JS = """
async ([url, device, tuning, prefill, steps, exportDb], stage) => {
  try {
    const onProgress = (p) => stage(`loading the model (${p.stage})`);
    const model = await window.webrt.loadModel(url, { device, tuning, onProgress });
    const vocab = model.manifest.model.config.vocab_size;
    const inputs = (ids, offset) => window.webrt.greedyInputs(vocab, ids, offset);
    const ids = Array.from({ length: prefill }, (_, i) => (i * 7919 + 5) % vocab);
    stage(`prefill (${prefill} tokens)`);
    let t0 = performance.now();
    let [tok] = await model.run("prefill", inputs(ids, 0), { readback: [0] });
    const prefillMs = performance.now() - t0;
    const tokens = [tok.data[0]];
    // one untimed step: the decode program is prepared on first use
    [tok] = await model.run("decode", inputs([tok.data[0]], prefill), { readback: [0] });
    tokens.push(tok.data[0]);
    stage(`decode (${steps} steps)`);
    t0 = performance.now();
    for (let s = 0; s < steps; s++) {
      [tok] = await model.run("decode", inputs([tok.data[0]], prefill + 1 + s), { readback: [0] });
      tokens.push(tok.data[0]);
    }
    const decodeMs = performance.now() - t0;
    const t = model.tuning ?? {};
    const result = { device: model.device, adapter: model.adapter, timings: model.timings, tokens,
      prefill_tokens_per_s: prefill / (prefillMs / 1000), decode_tokens_per_s: steps / (decodeMs / 1000),
      tuning: { source: t.source, device_key: t.device_key, winners: t.winners, functions: t.functions ?? {},
                candidates_timed: t.candidates_timed ?? 0, seconds: t.seconds ?? 0 } };
    if (exportDb) result.db = await window.webrt.exportTuningDB();
    model.unload();
    return result;
  } catch (err) {
    return { error: `${err.name}: ${err.message}` };
  }
}
"""


def measure(page, url: str, device: str, tuning, prefill: int, steps: int, export_db: bool = False) -> dict:
    """One load-and-measure in an open shell page (its IndexedDB persists across calls)."""
    return evaluate(page, _MEASURE_JS, [url, device, tuning, prefill, steps, export_db])


def tune_artifact(artifact: Path, device: str = "webgpu", budget_s: float = 30.0, prefill: int = 16,
                  steps: int = 4, entries: list[str] | None = None, bake: bool = True) -> dict:
    """Tune ARTIFACT's schedules on this machine's browser device; returns the report (see the CLI)."""
    manifest = read_manifest(artifact)
    if not manifest.get("tuning", {}).get("space"):
        raise WebrtError(f"{artifact} has no schedule candidates: recompile it with this webrt")
    tuning = {"budget_s": budget_s, "force": True, **({"entries": entries} if entries else {})}
    with shell_page(artifact) as (page, url):
        default = measure(page, url, device, False, prefill, steps)
        tuned = measure(page, url, device, tuning, prefill, steps, export_db=True)
    db = tuned.pop("db")
    if bake:
        bake_tuning_db(artifact, json.dumps(db, indent=1).encode())
    t = tuned["tuning"]
    kernels = {name: {"default_ms": r["default_ms"], "best_ms": r["best_ms"], "winner": r["winner"],
                      "rejected": r["rejected"]} for name, r in t["functions"].items()}
    return {
        "device": device, "adapter": tuned["adapter"], "device_key": t["device_key"],
        "speedup": tuned["decode_tokens_per_s"] / default["decode_tokens_per_s"],
        "prefill_speedup": tuned["prefill_tokens_per_s"] / default["prefill_tokens_per_s"],
        "seconds": t["seconds"], "budget_s": budget_s, "candidates_timed": t["candidates_timed"],
        "default": {k: default[k] for k in ("decode_tokens_per_s", "prefill_tokens_per_s")},
        "tuned": {k: tuned[k] for k in ("decode_tokens_per_s", "prefill_tokens_per_s")},
        "prefill_tokens": prefill, "decode_steps": steps, "winners": t["winners"], "kernels": kernels,
        "same_tokens": default["tokens"] == tuned["tokens"], "db": db,
    }
