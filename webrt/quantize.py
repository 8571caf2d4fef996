"""Group quantization of weights for the q4f32 mode.

A quantized matrix W [N, K] is stored as three tensors, with groups of 32 along K:
    qweight  uint32 [N, K * bits / 32]  a group's 32 codes in W = bits words, interleaved: code
                                         g*32 + j*W + l is bits j*bits.. of word g*W + l
    scales   float32 [N, K / 32]
    mins     float32 [N, K / 32]
and W[n, k] = code * scale + min (bits = 4, codes 0..15), or code * scale (bits = 8, codes are
signed bytes, min 0). GGUF's Q4_0 (d * (q - 8)), Q4_1 (d * q + m) and Q8_0 (d * q) blocks map onto
this exactly, so a GGUF model keeps its own numbers; float weights are quantized here, 4-bit
asymmetric (min and scale per group).

Why interleaved: the W words of a group, shifted right by j*bits, hold the codes of W consecutive
columns. A CPU kernel loads them as one SIMD vector next to a plain vector load of x, and a GPU
thread still reads whole words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GROUP = 32


def words_per_group(bits: int) -> int:
    return GROUP * bits // 32


@dataclass
class Quantized:
    codes: np.ndarray   # uint8 [N, K] (bits 4) or int8 [N, K] (bits 8)
    scales: np.ndarray  # float32 [N, K / GROUP]
    mins: np.ndarray    # float32 [N, K / GROUP]
    bits: int

    def packed(self) -> np.ndarray:
        """uint32 [N, K * bits / 32], in the interleaved layout above."""
        per_word, words = 32 // self.bits, words_per_group(self.bits)
        codes = self.codes.view(np.uint8).astype(np.uint32) & ((1 << self.bits) - 1)
        n, k = codes.shape
        # [n, group, j, l] -> [n, group, l, j]: word l of a group holds codes j*W + l for every j
        codes = codes.reshape(n, k // GROUP, per_word, words).transpose(0, 1, 3, 2)
        shifts = (np.arange(per_word, dtype=np.uint32) * self.bits)[None, None, None, :]
        return np.bitwise_or.reduce(codes << shifts, axis=3).astype(np.uint32).reshape(n, -1)

    def dequantize(self) -> np.ndarray:
        w = self.codes.astype(np.float32).reshape(*self.codes.shape[:-1], -1, GROUP)
        return (w * self.scales[..., None] + self.mins[..., None]).reshape(self.codes.shape)

    def rows(self, index) -> "Quantized":
        return Quantized(self.codes[index], self.scales[index], self.mins[index], self.bits)


def quantize_q4(w: np.ndarray) -> Quantized:
    n, k = w.shape
    if k % GROUP:
        raise ValueError(f"cannot group-quantize a matrix with {k} columns (not a multiple of {GROUP})")
    g = w.astype(np.float32).reshape(n, k // GROUP, GROUP)
    lo, hi = g.min(axis=2), g.max(axis=2)
    scale = (hi - lo) / 15.0
    safe = np.where(scale > 0, scale, 1.0)
    codes = np.clip(np.rint((g - lo[..., None]) / safe[..., None]), 0, 15).astype(np.uint8)
    return Quantized(codes.reshape(n, k), scale.astype(np.float32), lo.astype(np.float32), 4)


def from_gguf_blocks(raw: np.ndarray, kind: str) -> Quantized:
    """raw: uint8 [N, blocks * block_bytes] as the gguf reader gives a Q4_0 / Q4_1 / Q8_0 tensor."""
    n = raw.shape[0]
    if kind == "Q8_0":
        blocks = raw.reshape(n, -1, 34)
        d = blocks[..., :2].copy().view(np.float16)[..., 0].astype(np.float32)
        codes = blocks[..., 2:].copy().view(np.int8).reshape(n, -1)
        return Quantized(codes, d, np.zeros_like(d), 8)
    size = {"Q4_0": 18, "Q4_1": 20}[kind]
    blocks = raw.reshape(n, -1, size)
    d = blocks[..., :2].copy().view(np.float16)[..., 0].astype(np.float32)
    if kind == "Q4_1":
        m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    else:
        m = -8.0 * d
    qs = blocks[..., size - 16:]
    # a block's first 16 weights are the low nibbles of its 16 bytes, the next 16 the high nibbles
    codes = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).reshape(n, -1).astype(np.uint8)
    return Quantized(codes, d, m.astype(np.float32), 4)
