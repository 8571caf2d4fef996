"""The roofline: the work a token costs (FLOPs and bytes, from the model's shape) and the raw limits
of this browser, measured by the micro-kernels in microkernels.c (wasm) and web/roofline.js (WGSL)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..errors import WebrtError

MICROKERNELS = Path(__file__).parent / "microkernels.c"

# bytes per weight: f32, or q4f32's 4-bit codes with an f32 scale and min per group of 32
WEIGHT_BYTES = {"f32": 4.0, "q4f32": 0.5 + 8 / 32}


def build_microkernels(out: Path) -> Path:
    """Compile microkernels.c to wasm32 + SIMD128 with zig's clang (the ziglang package)."""
    cmd = [sys.executable, "-m", "ziglang", "cc", "--target=wasm32-freestanding", "-msimd128", "-O3", "-nostdlib",
           "-Wl,--no-entry", "-Wl,--export-memory", "-o", str(out), str(MICROKERNELS)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise WebrtError(f"building the wasm micro-kernels failed: {result.stderr.strip()[-500:]}")
    return out


def token_costs(config: dict, quantization: str) -> dict:
    """FLOPs and bytes of the forward pass from a manifest's model config (webrt's names):
    per decode token at context `c` and per prefill of `n` tokens, as functions."""
    h, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads, kv_heads, vocab = config["num_attention_heads"], config["num_key_value_heads"], config["vocab_size"]
    hd = config.get("head_dim") or h // heads
    matmul_params = layers * (h * heads * hd + 2 * h * kv_heads * hd + heads * hd * h + 3 * h * inter) + h * vocab
    weight_bytes = matmul_params * WEIGHT_BYTES[quantization]
    kv_row_bytes = 2 * layers * kv_heads * hd * 4  # keys and values of one position, f32

    def attention_flops(c):  # scores and weighted values over c positions, all heads
        return 4 * layers * heads * hd * c

    def decode(c: int) -> dict:
        return {"flops": 2 * matmul_params + attention_flops(c), "bytes": weight_bytes + kv_row_bytes * c}

    def prefill(n: int) -> dict:
        # the weights stream once per prefill (a lower bound), positions attend to 1..n
        return {"flops": n * 2 * matmul_params + sum(attention_flops(c) for c in range(1, n + 1)),
                "bytes": weight_bytes + kv_row_bytes * n}

    return {"matmul_params": matmul_params, "weight_bytes": weight_bytes, "decode": decode, "prefill": prefill}


def achieved(costs: dict, row: dict, decode_tokens: int) -> dict:
    """GFLOP/s and GB/s a measured row reached, for prefill and decode (decode_tokens: the row's
    tokens, the first of them from the prefill)."""
    out = {}
    n = row["prompt_tokens"]
    if row.get("ttft_ms"):
        work = costs["prefill"](n)
        seconds = row["ttft_ms"] / 1000
        out["prefill"] = {"gflops": work["flops"] / seconds / 1e9, "gbs": work["bytes"] / seconds / 1e9,
                          "intensity": work["flops"] / work["bytes"]}
    if row.get("decode_tokens_per_s"):
        # the decode steps run at contexts n+1 .. n+decode_tokens-1; the middle one stands for them
        work = costs["decode"](n + decode_tokens // 2)
        rate = row["decode_tokens_per_s"]
        out["decode"] = {"gflops": work["flops"] * rate / 1e9, "gbs": work["bytes"] * rate / 1e9,
                         "intensity": work["flops"] / work["bytes"]}
    return out
