"""GGUF Q4_0 and Q4_1 models in the layout each loads into (its own, f16 scales decoded inside the
kernels, or the group layout: GROUP_LAYOUT_BITS in webrt/models/quantized.py): a random-weight LLaMA written with every matrix in one type is compiled by webrt; the report gives
the artifact's bytes for those matrices over the GGUF's, the greedy tokens on wasm (1 and 2
threads) against transformers loading the same GGUF, and the same greedy run with the int-dot
kernels on every 4-bit matmul (`--int-dot all`) beside them.

    python bench/q4_gguf_layout.py    # writes bench/q4_gguf_layout.json and .md

The default model (Q4_1) is checked by tests/test_default_model.py; this covers Q4_0, which no
shipped model uses, and Q4_1 at a size whose rows are not all a multiple of 64.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import gguf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import webrt.quantize  # noqa: E402
from tests.models import make_hf_model  # noqa: E402
from tests.test_weight_types import MIX_MODEL, NEW_TOKENS, PROMPT, write_mix_gguf  # noqa: E402
from webrt.models.quantized import layout_of  # noqa: E402
from webrt.weight_types import TYPES  # noqa: E402

# hidden 320: K / 32 = 10 scales a row (5 words of halves), intermediate 512
MODEL = MIX_MODEL


class OneType(dict):
    """write_mix_gguf's type choice with one type for every matrix (no llama.cpp mix does that)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def __call__(self, mix, layers, tied):
        return self

    def get(self, name, default=None):
        return self.kind


def write_one_type_gguf(folder: Path, path: Path, kind: str) -> None:
    original = webrt.quantize.MixTypes
    webrt.quantize.MixTypes = OneType(kind)
    try:
        write_mix_gguf(folder, path, "q4_k_m")  # the mix name is ignored by OneType
    finally:
        webrt.quantize.MixTypes = original


def reference(path: Path) -> tuple[list[int], list[float]]:
    """transformers' greedy tokens on the GGUF, and at each step the gap between its top two logits."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                              dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([PROMPT]), do_sample=False, max_new_tokens=NEW_TOKENS, pad_token_id=0,
                             output_scores=True, return_dict_in_generate=True)
    margins = [float(torch.topk(step[0], 2).values.diff().abs()) for step in out.scores]
    return out.sequences[0, len(PROMPT):].tolist(), margins


def weight_bytes(artifact: Path, kind: str) -> int:
    """Bytes of the artifact's tensors that hold the matrices: the parts of the layout the type
    loads into (its own, or the group layout's; not the norms or the RoPE tables)."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    tensors = manifest["weights"]["tensors"] if "weights" in manifest else manifest["tensors"]
    parts = {"qweight", "scales", "mins"} if layout_of(kind) == "group" else {p.name for p in TYPES[kind].parts}
    return sum(t["bytes"] for t in tensors if t["name"].rsplit(".", 1)[1] in parts)


def main() -> None:
    from tests.test_generation import generate
    from webrt.build_artifact import compile_model

    load_before = os.getloadavg()
    report = {"command": "python bench/q4_gguf_layout.py", "date": time.strftime("%Y-%m-%d %H:%M"),
              "model": MODEL, "prompt": PROMPT, "new_tokens": NEW_TOKENS, "load_before": load_before, "types": {}}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        folder = make_hf_model(work / "hf", "llama", **MODEL)
        for kind in ("Q4_0", "Q4_1"):
            path = work / f"{kind}.gguf"
            write_one_type_gguf(folder, path, kind)
            reader = gguf.GGUFReader(str(path))
            gguf_matrix_bytes = sum(int(t.n_bytes) for t in reader.tensors if len(t.shape) == 2)
            expected, margins = reference(path)
            row = {"layout": layout_of(kind), "gguf_matrix_bytes": gguf_matrix_bytes, "transformers_tokens": expected,
                   "transformers_top2_margins": margins, "runs": {}}
            for int_dot in ("none", "all"):
                t0 = time.perf_counter()
                artifact = compile_model(path, work / f"{kind}-{int_dot}", "q4f32", tuning_candidates=False,
                                         int_dot=int_dot)
                row.setdefault("compile_seconds", {})[str(int_dot)] = round(time.perf_counter() - t0, 1)
                row["artifact_matrix_bytes"] = weight_bytes(artifact, kind)
                for threads in (1, 2):
                    run = generate(artifact, [{"prompt": PROMPT, "n": NEW_TOKENS, "sampling": {"temperature": 0},
                                               "chunk": 128}], "wasm", threads)[0]
                    key = f"wasm-{threads}" + ("-int-dot" if int_dot == "all" else "")
                    equal = next((i for i, (a, b) in enumerate(zip(run["tokens"], expected)) if a != b), len(expected))
                    row["runs"][key] = {"tokens": run["tokens"], "equal_prefix": equal,
                                        "margin_at_divergence": margins[equal] if equal < len(expected) else None}
            row["ratio"] = row["artifact_matrix_bytes"] / gguf_matrix_bytes
            report["types"][kind] = row
            print(kind, json.dumps({k: v for k, v in row.items() if k != "transformers_tokens"}), flush=True)
    report["load_after"] = os.getloadavg()
    (ROOT / "bench" / "q4_gguf_layout.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["# GGUF Q4_0 / Q4_1 in the layouts they load into: artifact bytes and greedy tokens", "",
             f"`{report['command']}` on {report['date']}, load average {load_before[0]:.1f} before, "
             f"{report['load_after'][0]:.1f} after. A random-weight LLaMA (hidden {MODEL['hidden_size']}, "
             f"intermediate {MODEL['intermediate_size']}, {MODEL['num_hidden_layers']} layers, vocabulary "
             f"{MODEL['vocab_size']}, untied) with every matrix in one GGUF type, compiled by webrt; "
             f"{NEW_TOKENS} greedy tokens against transformers loading the same GGUF. Matrix bytes: the "
             "artifact's tensors of the layout's parts (not the norms or RoPE tables), over the GGUF's 2-D tensors. "
             "Layout: `own` is the type's own (f16 scales, webrt/weight_types.py), `group` the group layout "
             "(f32 scale and min; GROUP_LAYOUT_BITS in webrt/models/quantized.py).", "",
             "A divergence is given with transformers' gap between its top two logits at that step (a near-tie "
             "when small; the int-dot kernels round activations, bench/int_dot.md).", "",
             "| type | layout | GGUF matrix bytes | artifact bytes | ratio | run | tokens equal to transformers | "
             "top-2 gap where they part |", "|---|---|---|---|---|---|---|---|"]
    for kind, row in report["types"].items():
        for i, (key, run) in enumerate(row["runs"].items()):
            layout = "own" if row["layout"] == "gguf" else row["layout"]
            head = (f"| {kind} | {layout} | {row['gguf_matrix_bytes']:,} | {row['artifact_matrix_bytes']:,} "
                    f"| {row['ratio']:.4f} " if i == 0 else "| | | | | ")
            gap = "-" if run["margin_at_divergence"] is None else f"{run['margin_at_divergence']:.3g}"
            lines.append(head + f"| {key} | {run['equal_prefix']}/{NEW_TOKENS} | {gap} |")
    lines.append("")
    (ROOT / "bench" / "q4_gguf_layout.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
