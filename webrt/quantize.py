"""Group quantization of weights for the q4f32 mode.

A quantized matrix W [N, K] is stored as three tensors, with groups of 32 along K:
    qweight  uint32 [N, K * bits / 32]  a group's 32 codes in W = bits words, interleaved: code
                                         g*32 + j*W + l is bits j*bits.. of word g*W + l
    scales   float32 [N, K / 32]
    mins     float32 [N, K / 32]
and W[n, k] = code * scale + min (bits = 4, codes 0..15), or code * scale (bits = 8, codes are
signed bytes, min 0). Float weights are quantized here, 4-bit asymmetric (min and scale per
group). GGUF's Q4_0 (d * (q - 8)), Q4_1 (d * q + m) and Q8_0 (d * q) blocks map onto this exactly
(from_gguf_blocks, for comparisons), but GGUF models keep their own types' layouts, with the
GGUF's f16 scales (webrt/weight_types.py).

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


# ---- GGUF block quantizers (llama.cpp's reference algorithms) ----------------------------------------
#
# Float weights -> GGUF blocks (uint8 [N, K / block * block_bytes]), the bytes a llama.cpp
# `quantize` writes with no importance matrix: Q8_0, Q5_0, Q5_1, Q4_0 and Q4_1 come from the gguf
# package (bit-exact ports of ggml's *_ref functions); Q4_K, Q5_K and Q6_K are written here after
# quantize_row_q{4,5,6}_K_ref, make_qkx2_quants and make_qx_quants in ggml-quants.c, vectorized
# over blocks with float32 arithmetic (sums may round in another order than ggml's loops).

F32 = np.float32
GROUP_MAX_EPS = F32(1e-15)


def _nearest(x) -> np.ndarray:
    """ggml's nearest_int: round half to even."""
    return np.rint(x).astype(np.int32)


def _sum(terms: np.ndarray) -> np.ndarray:
    """Row sums of terms [B, n] in float32, added left to right as ggml's loops do (numpy's own sum
    adds pairwise, which rounds differently and flipped near-tie choices of scale)."""
    total = terms[:, 0].copy()
    for i in range(1, terms.shape[1]):
        total += terms[:, i]
    return total


def _qkx2(x: np.ndarray, w: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int):
    """make_qkx2_quants over rows of x [B, n] (weights w): (scale, -min, codes) per row. As in
    ggml, a trial that improves the error moves the min, and later trials round against it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.minimum(x.min(1), F32(0))
        high = x.max(1)
        sum_w, sum_x = _sum(w), _sum(w * x)
        flat = high == low
        iscale = F32(nmax) / np.where(flat, F32(1), high - low)
        scale = F32(1) / iscale
        codes = np.clip(_nearest(iscale[:, None] * (x - low[:, None])), 0, nmax)
        best = _sum(w * (scale[:, None] * codes + low[:, None] - x) ** 2)
        for step in range(nstep + 1):
            iscale = (F32(rmin) + F32(rdelta) * F32(step) + F32(nmax)) / np.where(flat, F32(1), high - low)
            trial = np.clip(_nearest(iscale[:, None] * (x - low[:, None])), 0, nmax).astype(F32)
            sum_l, sum_l2, sum_xl = _sum(w * trial), _sum(w * trial * trial), _sum(w * trial * x)
            det = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
            positive = this_min > 0
            this_scale = np.where(positive, sum_xl / sum_l2, this_scale)
            this_min = np.where(positive, F32(0), this_min)
            error = _sum(w * (this_scale[:, None] * trial + this_min[:, None] - x) ** 2)
            better = (det > 0) & (error < best)
            codes = np.where(better[:, None], trial.astype(np.int32), codes)
            best = np.where(better, error, best)
            scale = np.where(better, this_scale, scale)
            low = np.where(better, this_min, low)
    codes[flat] = 0
    return np.where(flat, F32(0), scale).astype(F32), (-low).astype(F32), codes


def _qx(x: np.ndarray, nmax: int):
    """make_qx_quants with rmse_type 1 (weights x^2) over rows of x [B, n]: (scale, codes + nmax)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pick = np.abs(x).argmax(1)
        top = x[np.arange(len(x)), pick]
        tiny = np.abs(top) < GROUP_MAX_EPS
        top = np.where(tiny, F32(1), top)
        w = x * x

        def trial(iscale):
            q = np.clip(_nearest(iscale[:, None] * x), -nmax, nmax - 1)
            qf = q.astype(F32)
            return q, _sum(w * x * qf), _sum(w * qf * qf)

        q, sumlx, suml2 = trial(F32(-nmax) / top)
        scale = np.where(suml2 != 0, sumlx / suml2, F32(0))
        best = scale * sumlx
        for step in range(-9, 10):
            if step == 0:
                continue
            q2, sumlx, suml2 = trial(-(F32(nmax) + F32(0.1) * F32(step)) / top)
            better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
            q = np.where(better[:, None], q2, q)
            scale = np.where(better, sumlx / suml2, scale)
            best = np.where(better, scale * sumlx, best)
    codes = q + nmax
    codes[tiny] = 0
    return np.where(tiny, F32(0), scale).astype(F32), codes


def _f16_bytes(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.astype(np.float16)).view(np.uint8).reshape(len(x), 2)


def _k_scales(x: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int):
    """The super-block part shared by Q4_K and Q5_K: (d, dmin, 12 packed scale bytes, codes [B, 256])."""
    blocks = len(x)
    sub = x.reshape(blocks * 8, 32)
    av = np.sqrt(_sum(sub * sub) / F32(32))
    weights = av[:, None] + np.abs(sub)
    scales, mins, codes = _qkx2(sub, weights, nmax, rmin, rdelta, nstep)
    scales, mins, codes = scales.reshape(blocks, 8), mins.reshape(blocks, 8), codes.reshape(blocks, 256)
    max_scale = np.maximum(scales.max(1), F32(0))
    max_min = np.maximum(mins.max(1), F32(0))
    with np.errstate(divide="ignore"):
        inv_scale = np.where(max_scale > 0, F32(63) / max_scale, F32(0))
        inv_min = np.where(max_min > 0, F32(63) / max_min, F32(0))
    ls = np.minimum(63, _nearest(inv_scale[:, None] * scales) & 0xFF)
    lm = np.minimum(63, _nearest(inv_min[:, None] * mins) & 0xFF)
    packed = np.zeros((blocks, 12), np.uint8)
    packed[:, 0:4] = ls[:, :4] | ((ls[:, 4:] >> 4) << 6)
    packed[:, 4:8] = lm[:, :4] | ((lm[:, 4:] >> 4) << 6)
    packed[:, 8:12] = (ls[:, 4:] & 0xF) | ((lm[:, 4:] & 0xF) << 4)
    d = (max_scale / F32(63)).astype(np.float16)
    dmin = (max_min / F32(63)).astype(np.float16)
    # the codes again, against the rounded scales (as get_scale_min_k4 gives them back)
    step = (d.astype(F32)[:, None] * ls.astype(F32))
    offset = (dmin.astype(F32)[:, None] * lm.astype(F32))
    with np.errstate(divide="ignore", invalid="ignore"):
        again = np.clip(_nearest((x.reshape(blocks, 8, 32) + offset[..., None]) / step[..., None]), 0, nmax)
    codes = np.where((step != 0)[..., None], again, codes.reshape(blocks, 8, 32)).reshape(blocks, 256)
    head = np.concatenate([_f16_bytes(d), _f16_bytes(dmin), packed], axis=1)
    return head, codes.astype(np.uint8)


def _pair_nibbles(codes: np.ndarray) -> np.ndarray:
    """Each 64 codes -> 32 bytes: code i in the low nibble of byte i, code 32 + i in the high one."""
    c = codes.reshape(len(codes), -1, 2, 32)
    return (c[:, :, 0] | (c[:, :, 1] << 4)).reshape(len(codes), -1).astype(np.uint8)


def _q4_k(x: np.ndarray) -> np.ndarray:
    head, codes = _k_scales(x, 15, -1.0, 0.1, 20)
    return np.concatenate([head, _pair_nibbles(codes)], axis=1)


def _q5_k(x: np.ndarray) -> np.ndarray:
    head, codes = _k_scales(x, 31, -0.5, 0.1, 15)
    high = (codes >> 4).reshape(len(x), 8, 32)   # run k of 32 codes -> bit k of bytes 0..31
    qh = np.bitwise_or.reduce(high << np.arange(8, dtype=np.uint8)[None, :, None], axis=1).astype(np.uint8)
    return np.concatenate([head, qh, _pair_nibbles(codes & 15)], axis=1)


def _q6_k(x: np.ndarray) -> np.ndarray:
    blocks = len(x)
    scales, codes = _qx(x.reshape(blocks * 16, 16), 32)
    scales, codes = scales.reshape(blocks, 16), codes.reshape(blocks, 256)
    pick = np.abs(scales).argmax(1)
    top = scales[np.arange(blocks), pick]
    empty = np.abs(top) < GROUP_MAX_EPS
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(empty, F32(0), F32(-128) / np.where(empty, F32(1), top))
        d = np.where(empty, F32(0), F32(1) / iscale).astype(np.float16)
        sub = np.minimum(127, _nearest(iscale[:, None] * scales)).astype(np.int8)
        step = d.astype(F32)[:, None] * sub.astype(F32)
        again = np.clip(_nearest(x.reshape(blocks, 16, 16) / step[..., None]), -32, 31) + 32
    codes = np.where((step != 0)[..., None], again, codes.reshape(blocks, 16, 16)).reshape(blocks, 256)
    codes[empty] = 0
    sub[empty] = 0
    c = codes.reshape(blocks, 2, 4, 32).astype(np.uint8)  # halves of 128: four runs of 32
    ql = np.concatenate([(c[:, :, 0] & 15) | ((c[:, :, 2] & 15) << 4), (c[:, :, 1] & 15) | ((c[:, :, 3] & 15) << 4)],
                        axis=2).reshape(blocks, 128)
    qh = ((c[:, :, 0] >> 4) | ((c[:, :, 1] >> 4) << 2) | ((c[:, :, 2] >> 4) << 4) | ((c[:, :, 3] >> 4) << 6))
    return np.concatenate([ql, qh.reshape(blocks, 64), sub.view(np.uint8), _f16_bytes(d)], axis=1).astype(np.uint8)


_K_QUANTIZERS = {"Q4_K": _q4_k, "Q5_K": _q5_k, "Q6_K": _q6_k}


def quantize_blocks(w: np.ndarray, kind: str) -> np.ndarray:
    """Float matrix [N, K] -> GGUF blocks of type `kind`, uint8 [N, K / block * block_bytes]."""
    import gguf

    w = np.ascontiguousarray(w, dtype=F32)
    n, k = w.shape
    if kind in _K_QUANTIZERS:
        if k % 256:
            raise ValueError(f"{kind} needs rows of a multiple of 256 weights, not {k}")
        return _K_QUANTIZERS[kind](w.reshape(-1, 256)).reshape(n, -1)
    return np.asarray(gguf.quants.quantize(w, gguf.GGMLQuantizationType[kind])).reshape(n, -1)


# ---- llama.cpp's mixes (llama_tensor_get_type for a dense decoder, no importance matrix) -------------

# mix -> (the type of most matrices, whether attn_v / ffn_down of some layers take Q6_K)
MIXES = {"q4_k_m": ("Q4_K", True), "q5_k_m": ("Q5_K", True), "q6_k": ("Q6_K", False), "q8_0": ("Q8_0", False)}
# a row that is not a multiple of 256 cannot hold K-quant super-blocks: llama.cpp falls back to these
K_FALLBACK = {"Q2_K": None, "Q3_K": None, "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


def row_fallback(kind: str, cols: int) -> str:
    """The type a matrix with rows of `cols` weights gets when `kind` asks for K-quant blocks."""
    if kind in K_FALLBACK and cols % 256:
        return K_FALLBACK[kind] or kind
    return kind


def _more_bits(layer: int, layers: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between."""
    return layer < layers // 8 or layer >= 7 * layers // 8 or (layer - layers // 8) % 3 == 2


class MixTypes(dict):
    """HF weight name -> GGUF type for a llama.cpp mix; `get` answers for any matrix name, so a
    model family asks it like `ckpt.code_bits()` (rows that are not a multiple of 256 take
    row_fallback in QuantizedWeight)."""

    def __init__(self, mix: str, layers: int, tied: bool):
        super().__init__()
        self.mix, self.layers, self.tied = mix, layers, tied
        self.base, self.more = MIXES[mix]

    def get(self, name: str, default=None):
        head = "Q8_0" if self.base == "Q8_0" else "Q6_K"
        if name == "lm_head.weight" or (self.tied and name == "model.embed_tokens.weight"):
            return head
        parts = name.split(".")
        if self.more and len(parts) > 3 and parts[1] == "layers" and (".v_proj." in name or ".down_proj." in name):
            if _more_bits(int(parts[2]), self.layers):
                return "Q6_K"
        return self.base

    __getitem__ = get
