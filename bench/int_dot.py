"""What integer activations (the wasm int-dot kernels, webrt/compile/int_dot.py) change on the default
model, against the exact f32 kernels, both on wasm with one thread:

  * greedy tokens of the standard chat prompts (tests/test_default_model.py) against transformers
    loading the same GGUF, with the reference's top-2 margin where a token differs;
  * perplexity on a fixed text set (TEXTS below), teacher-forced, and the max abs logit difference.

    python bench/int_dot.py [--exact DIR --int-dot DIR]   # writes bench/int_dot.json and int_dot.md

Needs the test extra (torch, transformers) for the reference.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.bench.native import load_average  # noqa: E402
from webrt.browser import evaluate, shell_page  # noqa: E402
from tests.models import default_model_greedy_reference  # noqa: E402

PROMPTS = ["What is the capital of France?", "Name three colors.", "Write one sentence about the sea."]
NEW_TOKENS = 16
TEXTS = [
    "The sea was calm that morning, and the fishing boats left the harbour one after another. The old "
    "captain stood on the quay with his hands in his pockets, watching the clouds gather in the west. He "
    "had seen many storms in his life, and he knew that this one would arrive before the evening.",
    "Photosynthesis is the process by which green plants use sunlight to turn water and carbon dioxide "
    "into sugar and oxygen. It takes place mostly in the leaves, inside small structures called "
    "chloroplasts, which contain the green pigment chlorophyll.",
    "To make a simple tomato sauce, warm some olive oil in a pan, add a chopped onion and cook it slowly "
    "until it is soft. Then add two cloves of garlic, a tin of tomatoes and a pinch of salt, and let the "
    "sauce simmer for twenty minutes, stirring from time to time.",
    "The city council met on Tuesday to discuss the new bus routes. Several residents asked for more "
    "frequent services in the evening, while shop owners worried about the loss of parking spaces on "
    "the main street. A final decision is expected next month.",
]

JS = """
async ([url, prompts, n, texts], stage) => {
  const model = await window.webrt.loadModel(url, { device: "wasm", threads: 1 });
  const gen = new window.webrt.Generator(model);
  const greedy = [];
  for (const prompt of prompts) {
    gen.reset();
    const sampler = new window.webrt.Sampler({ temperature: 0 }, prompt);
    let { token } = await gen.prefill(prompt, sampler);
    const tokens = [token];
    while (tokens.length < n) tokens.push(token = await gen.decode(token, sampler));
    greedy.push(tokens);
  }
  const texts_out = [];
  for (const ids of texts) {
    const { logits } = await model.forward(ids);
    let nll = 0;
    const argmax = [];
    for (let i = 0; i + 1 < ids.length; i++) {
      const row = logits[i];
      let max = -Infinity, best = 0;
      for (let v = 0; v < row.length; v++) if (row[v] > max) { max = row[v]; best = v; }
      let sum = 0;
      for (let v = 0; v < row.length; v++) sum += Math.exp(row[v] - max);
      nll += -(row[ids[i + 1]] - max - Math.log(sum));
      argmax.push(best);
    }
    texts_out.push({ nll, argmax, last: Array.from(logits[ids.length - 2]) });
  }
  model.unload();
  return { greedy, texts: texts_out };
}
"""


def _compile(out: Path, int_dot: str) -> Path:
    from webrt.build_artifact import compile_model

    if not (out / "manifest.json").is_file():
        compile_model(None, out, "q4f32", tuning_candidates=False, int_dot=int_dot)
    return out


def _reference(prompts_text):
    tokenizer, model, prompts, refs = default_model_greedy_reference(prompts_text, NEW_TOKENS)
    texts = [tokenizer(t)["input_ids"] for t in TEXTS]
    return tokenizer, model, prompts, refs, texts


def _margin(model, ids: list[int]) -> float:
    """The reference's top-2 logit margin for the token after ids."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].numpy()
    top = np.sort(logits)[-2:]
    return float(top[1] - top[0])


@click.command()
@click.option("--exact", type=click.Path(path_type=Path), default=None)
@click.option("--int-dot", "int_dot", type=click.Path(path_type=Path), default=None)
@click.option("--out", type=click.Path(path_type=Path), default=ROOT / "bench" / "int_dot")
def main(exact: Path | None, int_dot: Path | None, out: Path) -> None:
    tokenizer, model, prompts, refs, texts = _reference(PROMPTS)
    load_before, started = load_average(), time.time()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="webrt-int-dot-") as tmp:
        artifacts = {"exact": exact or _compile(Path(tmp) / "exact", "none"),
                     "int-dot": int_dot or _compile(Path(tmp) / "int-dot", "all")}
        for label, folder in artifacts.items():
            with shell_page(folder) as (page, url):
                runs[label] = evaluate(page, JS, [url, prompts, NEW_TOKENS, texts])
    result = {"command": "python bench/int_dot.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d %H:%M"),
              "load_average_before": load_before, "load_average_after": load_average(),
              "wall_s": round(time.time() - started), "greedy": {}, "perplexity": {}}
    for label, run in runs.items():
        rows = []
        for text, prompt, ours, ref in zip(PROMPTS, prompts, run["greedy"], refs):
            same = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), len(ref))
            row = {"prompt": text, "tokens_equal": same, "of": len(ref), "text": tokenizer.decode(ours)}
            if same < len(ref):
                row["reference_margin_at_divergence"] = _margin(model, prompt + ref[:same])
            rows.append(row)
        tokens = sum(len(t) - 1 for t in texts)
        nll = sum(t["nll"] for t in run["texts"])
        result["greedy"][label] = rows
        result["perplexity"][label] = {"tokens": tokens, "perplexity": math.exp(nll / tokens)}
    ex, idot = runs["exact"]["texts"], runs["int-dot"]["texts"]
    result["next_token_agreement"] = {
        "same": int(sum(np.sum(np.array(a["argmax"]) == np.array(b["argmax"])) for a, b in zip(ex, idot))),
        "of": int(sum(len(a["argmax"]) for a in ex))}
    result["max_abs_logit_difference_last_position"] = float(max(
        np.abs(np.array(a["last"]) - np.array(b["last"])).max() for a, b in zip(ex, idot)))
    result["logit_range"] = float(max(np.abs(np.array(a["last"])).max() for a in ex))
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(_markdown(result))
    print(out.with_suffix(".md").read_text())


def _markdown(r: dict) -> str:
    p = r["perplexity"]
    lines = [f"# Integer-dot kernels on the default model ({r['date']})", "",
             f"Command: `{r['command']}`. Load average before {r['load_average_before']}, after "
             f"{r['load_average_after']}. SmolLM2-135M-Instruct Q4_1 GGUF as q4f32, wasm, 1 thread: the exact f32 "
             "kernels against the int-dot kernels (`webrt compile --int-dot all`, every 4-bit and Q8_0 matmul: activations rounded to 16-bit "
             "integers per 32 columns, webrt/compile/int_dot.c's LEVELS).", "",
             "## Perplexity on the fixed text set (bench/int_dot.py TEXTS, teacher-forced)", "",
             "| kernels | tokens | perplexity |", "|---|---|---|"]
    for label, v in p.items():
        lines.append(f"| {label} | {v['tokens']} | {v['perplexity']:.4f} |")
    delta = p["int-dot"]["perplexity"] / p["exact"]["perplexity"] - 1
    agree = r["next_token_agreement"]
    lines += ["", f"Perplexity delta: {delta:+.3%}. Next-token argmax equal at {agree['same']} of {agree['of']} "
              f"positions. Max abs logit difference at the last position: "
              f"{r['max_abs_logit_difference_last_position']:.4f} (logits up to {r['logit_range']:.1f}).", "",
              "## Greedy tokens against transformers on the same GGUF (16 tokens)", "",
              "| kernels | prompt | tokens equal | reference top-2 margin at the first difference | text |",
              "|---|---|---|---|---|"]
    for label, rows in r["greedy"].items():
        for row in rows:
            margin = row.get("reference_margin_at_divergence")
            lines.append(f"| {label} | {row['prompt']} | {row['tokens_equal']}/{row['of']} | "
                         f"{'' if margin is None else f'{margin:.4f}'} | {row['text']!r} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
