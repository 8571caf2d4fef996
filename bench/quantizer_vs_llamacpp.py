"""webrt's GGUF quantizer (webrt/quantize.py) against llama.cpp's own `quantize` on the same float
weights: a random-weight LLaMA written as an F32 GGUF is quantized by llama.cpp
(llama-cpp-python's llama_model_quantize, no importance matrix) to each file type, and every
matrix of the result is compared with webrt's quantizer on the same float32 numbers:

  * the type llama.cpp chose for the tensor against webrt's choice (MixTypes + row_fallback) for
    the mixes webrt offers (q4_k_m, q5_k_m, q6_k, q8_0);
  * the block bytes of that type: blocks that differ, and the largest difference of the weights
    they dequantize to (gguf.quants.dequantize).

    python bench/quantizer_vs_llamacpp.py    # writes bench/quantizer_vs_llamacpp.json and .md

llama-cpp-python is a benchmark dependency (pip install 'webrt[bench]'), never a test one.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import gguf
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.models import finish_gguf, make_hf_model, read_config, start_gguf  # noqa: E402
from tests.test_weight_types import GGUF_LAYER_NAMES  # noqa: E402
from webrt.quantize import MIXES, MixTypes, quantize_blocks, row_fallback  # noqa: E402

# rows of 256 weights (q, k, v, o, gate, up, the tied embedding) and of 640 (down: K-quants fall
# back to Q5_0 / Q5_1 / Q8_0 there); 4 layers, so use_more_bits picks layers 2 and 3
MODEL = dict(hidden_size=256, intermediate_size=640, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=49152, max_position_embeddings=96, tie_word_embeddings=True)
# llama.cpp's file types (enum llama_ftype), webrt's mix name where it has one
FTYPES = {"Q4_0": (2, None), "Q4_1": (3, None), "Q8_0": (7, "q8_0"), "Q5_0": (8, None), "Q5_1": (9, None),
          "Q4_K_M": (15, "q4_k_m"), "Q5_K_M": (17, "q5_k_m"), "Q6_K": (18, "q6_k")}
HF_NAMES = {v: k for k, v in GGUF_LAYER_NAMES.items()}
HISTORY = ("Before the fix that came with this script (2026-12-02), the first run found Q4_K 4616/7936 blocks "
           "different (max dequantized diff 0.048), Q5_K 4230/7936 (0.023) and Q6_K 1423/49152 (0.013); Q4_0, "
           "Q4_1, Q5_0, Q5_1, Q8_0 (the gguf package's ports) and every type choice were already equal. Two causes, "
           "both in webrt/quantize.py: make_qkx2_quants (Q4_K, Q5_K) rounds each later trial against the min an "
           "earlier trial improved, in (x - min) and in iscale = (...) / (max - min), where webrt kept the first "
           "min's span; and ggml adds its sums left to right in float32 where numpy's sum adds pairwise, which "
           "flipped near-tie choices of scale (Q6_K's make_qx_quants).")


def write_f32_gguf(folder: Path, path: Path) -> None:
    """The HF folder's weights as an F32 GGUF, q and k interleaved as llama.cpp's converter does."""
    from safetensors.numpy import load_file

    cfg = read_config(folder)
    writer = start_gguf(folder, path, "llama")
    for name, array in load_file(str(folder / "model.safetensors")).items():
        array = array.astype(np.float32)
        if name in ("model.embed_tokens.weight", "model.norm.weight"):
            writer.add_tensor({"model.embed_tokens.weight": "token_embd.weight",
                               "model.norm.weight": "output_norm.weight"}[name], array)
            continue
        _, _, layer, rest = name.split(".", 3)
        module, kind = rest.rsplit(".", 1)
        if module in ("self_attn.q_proj", "self_attn.k_proj"):
            n = cfg["num_attention_heads"] if module == "self_attn.q_proj" else cfg["num_key_value_heads"]
            array = array.reshape(n, 2, array.shape[0] // n // 2, -1).swapaxes(1, 2).reshape(array.shape)
        writer.add_tensor(f"blk.{layer}.{GGUF_LAYER_NAMES[module]}.{kind}", array)
    finish_gguf(writer)


def hf_name(gguf_name: str) -> str:
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    _, layer, module, kind = gguf_name.split(".")
    return f"model.layers.{layer}.{HF_NAMES[module]}.{kind}"


def llama_quantize(src: Path, dst: Path, ftype: int) -> float:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    t0 = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed for ftype {ftype}: {rc}")
    return time.perf_counter() - t0


def compare(floats: dict[str, np.ndarray], quantized: Path, mix: str | None, layers: int, cache: dict) -> dict:
    reader = gguf.GGUFReader(str(quantized))
    types = MixTypes(mix, layers, True) if mix else None
    tensors = []
    for t in reader.tensors:
        kind = t.tensor_type.name
        if t.name not in floats or kind in ("F32", "F16"):
            continue
        w = floats[t.name]
        theirs = np.asarray(t.data, dtype=np.uint8).reshape(w.shape[0], -1)
        key = (t.name, kind)
        if key not in cache:
            t0 = time.perf_counter()
            cache[key] = (quantize_blocks(w, kind), time.perf_counter() - t0)
        ours, seconds = cache[key]
        block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]][1]
        differ = (ours.reshape(-1, block_bytes) != theirs.reshape(-1, block_bytes)).any(axis=1)
        entry = {"tensor": t.name, "shape": list(w.shape), "llama_type": kind, "blocks": int(differ.size),
                 "blocks_differ": int(differ.sum()), "webrt_seconds": round(seconds, 3)}
        if differ.any():
            qtype = gguf.GGMLQuantizationType[kind]
            a = gguf.quants.dequantize(ours, qtype).reshape(w.shape)
            b = gguf.quants.dequantize(theirs, qtype).reshape(w.shape)
            entry["max_dequantized_diff"] = float(np.abs(a - b).max())
            entry["max_abs_weight"] = float(np.abs(w).max())
        if types is not None:
            entry["webrt_type"] = row_fallback(types.get(hf_name(t.name)), w.shape[1])
        tensors.append(entry)
    return {"tensors": tensors, "file_bytes": quantized.stat().st_size}


def main() -> None:
    import llama_cpp

    load_before = os.getloadavg()
    report = {"command": "python bench/quantizer_vs_llamacpp.py", "date": time.strftime("%Y-%m-%d %H:%M"),
              "llama_cpp_python": llama_cpp.__version__, "gguf": gguf.__version__ if hasattr(gguf, "__version__") else "",
              "model": MODEL, "load_before": load_before, "ftypes": {}}
    cache: dict = {}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        folder = make_hf_model(work / "hf", "llama", **MODEL)
        src = work / "f32.gguf"
        write_f32_gguf(folder, src)
        floats = {t.name: np.asarray(t.data, dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])
                  for t in gguf.GGUFReader(str(src)).tensors if len(t.shape) == 2}
        for name, (ftype, mix) in FTYPES.items():
            dst = work / f"{name}.gguf"
            seconds = llama_quantize(src, dst, ftype)
            result = compare(floats, dst, mix, MODEL["num_hidden_layers"], cache)
            result["llama_seconds"] = round(seconds, 3)
            report["ftypes"][name] = result
            print(name, summary_line(name, result), flush=True)
    report["load_after"] = os.getloadavg()
    (ROOT / "bench" / "quantizer_vs_llamacpp.json").write_text(json.dumps(report, indent=1) + "\n")
    (ROOT / "bench" / "quantizer_vs_llamacpp.md").write_text(markdown(report))


def per_type(result: dict) -> dict:
    out: dict = {}
    for e in result["tensors"]:
        s = out.setdefault(e["llama_type"], {"tensors": 0, "blocks": 0, "differ": 0, "max_diff": 0.0})
        s["tensors"] += 1
        s["blocks"] += e["blocks"]
        s["differ"] += e["blocks_differ"]
        s["max_diff"] = max(s["max_diff"], e.get("max_dequantized_diff", 0.0))
    return out


def summary_line(name: str, result: dict) -> str:
    mismatched = [e["tensor"] for e in result["tensors"] if "webrt_type" in e and e["webrt_type"] != e["llama_type"]]
    parts = [f"{kind}: {s['differ']}/{s['blocks']} blocks differ (max {s['max_diff']:.3g})" for kind, s in per_type(result).items()]
    return "; ".join(parts) + (f"; type choice differs on {mismatched}" if mismatched else "")


def markdown(report: dict) -> str:
    m = report["model"]
    lines = ["# webrt's GGUF quantizer against llama.cpp's `quantize` (same float weights)", "",
             f"`{report['command']}` on {report['date']}, load average {report['load_before'][0]:.1f} before, "
             f"{report['load_after'][0]:.1f} after; llama-cpp-python {report['llama_cpp_python']} "
             "(llama_model_quantize, default params, no importance matrix).", "",
             f"A random-weight LLaMA (transformers init): hidden {m['hidden_size']}, intermediate "
             f"{m['intermediate_size']}, {m['num_hidden_layers']} layers, {m['num_attention_heads']} heads / "
             f"{m['num_key_value_heads']} KV heads, vocabulary {m['vocab_size']}, tied embedding; written as an F32 "
             "GGUF (q/k interleaved as llama.cpp's converter does). Rows of 256 weights everywhere except "
             "ffn_down (640: K-quants fall back). Each matrix llama.cpp quantized is quantized again by "
             "webrt.quantize.quantize_blocks to the type llama.cpp chose, from the same float32 numbers.", "",
             "| llama.cpp file type | tensor type | tensors | blocks | blocks that differ | max dequantized diff |"
             " type choice (webrt mix) |", "|---|---|---|---|---|---|---|"]
    for name, result in report["ftypes"].items():
        mix = FTYPES[name][1]
        with_choice = [e for e in result["tensors"] if "webrt_type" in e]
        agree = sum(e["webrt_type"] == e["llama_type"] for e in with_choice)
        choice = f"{agree}/{len(with_choice)} equal ({mix})" if mix else "- (no webrt mix)"
        for i, (kind, s) in enumerate(per_type(result).items()):
            lines.append(f"| {name if i == 0 else ''} | {kind} | {s['tensors']} | {s['blocks']} | {s['differ']} | "
                         f"{s['max_diff']:.3g} | {choice if i == 0 else ''} |")
    lines += ["", HISTORY, ""]
    differing = [(name, e) for name, r in report["ftypes"].items() for e in r["tensors"]
                 if e["blocks_differ"] or e.get("webrt_type", e["llama_type"]) != e["llama_type"]]
    if differing:
        lines += ["Tensors that differ:", ""]
        for name, e in differing:
            lines.append(f"- {name} {e['tensor']} {e['shape']}: llama.cpp {e['llama_type']}, webrt "
                         f"{e.get('webrt_type', e['llama_type'])}; {e['blocks_differ']}/{e['blocks']} blocks differ"
                         + (f", max dequantized diff {e['max_dequantized_diff']:.3g} (max |w| {e['max_abs_weight']:.3g})"
                            if "max_dequantized_diff" in e else ""))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
