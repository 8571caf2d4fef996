"""The default model's greedy check on every backend with all three standard prompts: the long form
of tests/test_default_model.py, whose WebGPU case runs only the first prompt in CI (SwiftShader takes
about 5 s a token on this machine, so three prompts cost CI 5 minutes).

    python bench/default_model_greedy.py [--artifact DIR]   # writes bench/default_model_greedy.json and .md

Without --artifact the default model is compiled as the test fixture does (q4f32, 512-token cache).
Needs the test extra (torch, transformers) for the reference. The check is the test's: greedy tokens
equal transformers on the same GGUF, or the first divergence sits on a reference near-tie.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_default_model import NEAR_TIE, NEW_TOKENS, PROMPTS, greedy_divergences  # noqa: E402
from tests.test_parity import BACKEND_IDS, BACKENDS  # noqa: E402
from tests.models import default_model_greedy_reference  # noqa: E402
from webrt.bench.native import load_average  # noqa: E402


def markdown(result: dict) -> str:
    rows, started, load_before = result["rows"], result["date"], result["load_average_before"]
    lines = [f"# The default model's greedy tokens against transformers on the same GGUF, every backend ({started})", "",
             f"Command: `{result['command']}`. {result['new_tokens']} greedy tokens of each standard chat prompt; a "
             f"divergence passes only on a reference top-2 margin under {result['near_tie']}. Load average before "
             f"{load_before}, after {result['load_average_after']}. tests/test_default_model.py runs the same check "
             "in CI (WebGPU: the first prompt only).", "",
             "| backend | prompt | equal tokens / compared | first divergence | reference margin there | ok | reply |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        compared = min(len(r["tokens"]), len(r["reference"]))  # transformers stops at its end-of-turn token
        equal = compared if r["first_divergence"] is None else r["first_divergence"]
        margin = "" if r["margin"] is None else f"{r['margin']:.2e}"
        lines.append(f"| {r['backend']} | {r['prompt']} | {equal} / {compared} | {'' if r['first_divergence'] is None else r['first_divergence']} | "
                     f"{margin} | {'yes' if r['ok'] else '**no**'} | {json.dumps(r['text'])} |")
    lines += ["", f"All rows pass: **{'yes' if result['ok'] else 'no'}**.", ""]
    return "\n".join(lines)


@click.command()
@click.option("--artifact", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None)
@click.option("--out", type=click.Path(path_type=Path), default=ROOT / "bench" / "default_model_greedy")
def main(artifact: Path | None, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="webrt-greedy-") as tmp:
        if artifact is None:
            artifact = Path(tmp) / "smollm2"
            subprocess.run([sys.executable, "-m", "webrt.cli", "compile", "-o", str(artifact), "--quantization",
                            "q4f32", "--context-window", "512"], check=True)
        reference = default_model_greedy_reference(PROMPTS, NEW_TOKENS)
        tokenizer = reference[0]
        started, load_before = time.strftime("%Y-%m-%d %H:%M"), load_average()
        rows = []
        for (device, threads), backend in zip(BACKENDS, BACKEND_IDS):
            t0 = time.perf_counter()
            ours, divergences = greedy_divergences(artifact, reference, device, threads, len(PROMPTS))
            for text, tokens, ref, divergence in zip(PROMPTS, ours, reference[3], divergences):
                rows.append({"backend": backend, "prompt": text, "tokens": tokens, "reference": ref,
                             "text": tokenizer.decode(tokens),
                             "first_divergence": None if divergence is None else divergence[0],
                             "margin": None if divergence is None else divergence[1],
                             "ok": divergence is None or divergence[1] < NEAR_TIE})
            print(f"{backend}: {time.perf_counter() - t0:.0f} s", flush=True)
    result = {"command": "python bench/default_model_greedy.py " + " ".join(sys.argv[1:]), "date": started,
              "load_average_before": load_before, "load_average_after": load_average(),
              "new_tokens": NEW_TOKENS, "near_tie": NEAR_TIE, "rows": rows, "ok": all(r["ok"] for r in rows)}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    if not result["ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
