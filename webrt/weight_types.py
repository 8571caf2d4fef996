"""GGUF weight types, each described once; the kernels of both backends are generated from it.

A description says what a GGUF block holds (`block` weights in `block_bytes` bytes), how its
bytes split into integer codes and per-block fields (`split`, numpy), and how to decode one weight
from them: code * scale (+ offset), where only the code is per weight and the scale and offset are
per sub-block (`sub_block` columns), so a kernel can decode those once per sub-block. Each is
written over a small set of operations that run on TIR expressions for the WGSL and wasm kernels,
and on numpy arrays for checks. Nothing is rounded: every weight decodes to the same float as
ggml's reference (`gguf.quants.dequantize`).

Artifact layout of a matrix W [N, K] of one type (docs/ARTIFACT.md, "GGUF weight types"), one
tensor per part, each row-major with one row per matrix row:

  code plane (`Plane`, `bits` per weight): uint32 [N, words]. Columns go in units of
      U = 128 / bits; column c is bits ((c % U) // 4) * bits upward of word (c // U) * 4 + c % 4.
      So four consecutive words, shifted right by one amount, hold the codes of four consecutive
      columns: a CPU kernel reads them as one SIMD vector next to a vector load of x, and a GPU
      thread reads whole words. A row is padded to whole units.
  field (`Field`, one or `count` values per `every` columns): float32 [N, K / every * count]
      for kind "f32"; otherwise the values' bit patterns ("f16", "u8", "s8") packed little-endian
      into uint32 [N, words] (padded to a whole word).

The kernels reduce over columns 32 g + 4 j + l (g < K/32, j < 8, l < 4), so every index below is
written in (g, j, l); l is the SIMD lane.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

LANES = 4   # columns per SIMD vector of codes (4 x u32 = one v128)
STEP = 32   # columns per reduction step g: 8 vectors j of 4 lanes l
GEMV_ROWS_ATTR = "webrt_gemv_rows"  # block annotation: a quantized GEMV's WeightType.gemv_rows (cpu_schedule)
FIELD_BITS = {"f32": 32, "f16": 16, "u8": 8, "s8": 8}


@dataclass(frozen=True)
class Plane:
    """Integer codes of `bits` bits per weight (signed: two's complement)."""
    name: str
    bits: int
    signed: bool = False

    @property
    def unit(self) -> int:
        """Columns per four words."""
        return LANES * 32 // self.bits

    def words(self, cols: int) -> int:
        return -(-cols // self.unit) * LANES

    def index(self, g, j, l):
        """(word, shift) of column 32 g + 4 j + l."""
        u, b = self.unit, self.bits
        if u >= STEP:
            per = u // STEP  # steps per unit
            return (g // per) * LANES + l, ((g % per) * (STEP // LANES) + j) * b
        vectors = u // LANES  # vectors per unit
        return (g * (STEP // u) + j // vectors) * LANES + l, (j % vectors) * b

    def shifts(self, g, j):
        """The shift of index() as (the step's part, g only; the code's part, j only)."""
        u, b = self.unit, self.bits
        if u >= STEP:
            return (g % (u // STEP)) * (STEP // LANES) * b, j * b
        return 0, (j % (u // LANES)) * b


@dataclass(frozen=True)
class Field:
    """`count` values per `every` columns (every is 16 or a multiple of 32)."""
    name: str
    every: int
    kind: str   # f32 (stored as float32), f16, u8, s8 (bit patterns packed into uint32 words)
    count: int = 1

    @property
    def bits(self) -> int:
        return FIELD_BITS[self.kind]

    def values(self, cols: int) -> int:
        return cols // self.every * self.count

    def words(self, cols: int) -> int:
        return -(-self.values(cols) * self.bits // 32)

    def group(self, g, j):
        """Which of the row's groups of `every` columns holds column 32 g + 4 j + l."""
        if self.every >= STEP:
            return g // (self.every // STEP)
        return g * (STEP // self.every) + j // (self.every // LANES)


@dataclass(frozen=True)
class WeightType:
    name: str            # GGUF's name (gguf.GGMLQuantizationType)
    block: int           # weights per GGUF block
    block_bytes: int     # bytes per GGUF block
    planes: tuple
    fields: tuple
    split: Callable      # uint8 blocks [n, block_bytes] -> {plane: codes [n, block], field: [n, values]}
    code: Callable       # Reader -> the weight's integer code, as float32, at the reader's column
    scale: Callable      # Reader -> the scale of the reader's sub-block
    offset: Callable | None = None  # Reader -> what is added to code * scale in the sub-block
    sub_block: int = 32  # columns that share one scale and offset (16 or 32)
    # weight rows per register block of the wasm decode GEMV (cpu_schedule._default_knobs). Two
    # where measured faster in Chromium's relaxed-SIMD build on the real Gemma 3 270M (Q5_0 1.4-1.5x,
    # Q8_0 LM head 1.2x, Q6_K 1.0-1.1x); Q4_K (0.91-0.97x with two) and the group layout keep four
    gemv_rows: int = 4

    @property
    def parts(self) -> tuple:
        return (*self.planes, *self.fields)

    def value(self, v: "Reader", scale=None, offset=None):
        """The weight at the reader's column: code * scale (+ offset), ggml's order of operations.
        scale and offset, when given, are the sub-block's values read from elsewhere (a kernel's
        decode stage, computed once per sub-block)."""
        w = self.code(v) * (self.scale(v) if scale is None else scale)
        if self.offset is None:
            return w
        return w + (self.offset(v) if offset is None else offset)

    def sub_index(self, g, j):
        """Index, within the row, of the sub-block holding column 32 g + 4 j + l."""
        per_step = STEP // self.sub_block
        return g * per_step + (j // (self.sub_block // LANES) if per_step > 1 else 0)

    def sub_position(self, s):
        """(g, j) of the first column of the row's sub-block s."""
        per_step = STEP // self.sub_block
        return s // per_step, (s % per_step) * (self.sub_block // LANES)

    def part_shapes(self, rows: int, cols: int) -> dict[str, tuple[tuple[int, int], str]]:
        """Artifact tensor name suffix -> ((rows, width), dtype)."""
        out = {p.name: ((rows, p.words(cols)), "uint32") for p in self.planes}
        for f in self.fields:
            out[f.name] = ((rows, f.values(cols)), "float32") if f.kind == "f32" else ((rows, f.words(cols)), "uint32")
        return out


class Reader:
    """Decodes one weight of a matrix in the artifact layout, on TIR expressions or numpy arrays.

    load(part, index) reads the part's row at an index; g, j, l place the column; ops is TIR_OPS or
    NUMPY_OPS. A type's `value` uses code(), field(), sub(), bits() and the ops below."""

    def __init__(self, wtype: WeightType, load, g, j, l, ops):
        self.type, self.load, self.g, self.j, self.l, self.ops = wtype, load, g, j, l, ops
        self._parts = {p.name: p for p in wtype.parts}

    # operations the type's `value` uses, the same on both sides
    def f32(self, x):
        return self.ops.f32(x)

    def i32(self, x):
        return self.ops.i32(x)

    def where(self, cond, a, b):
        return self.ops.where(cond, a, b)

    def bits(self, x, shift, width: int):
        """(x >> shift) & (2^width - 1), x unsigned."""
        return self.ops.shr(x, shift) & ((1 << width) - 1)

    def sub(self, n: int):
        """Index, within the block, of the n-column sub-block (n = 16 or a multiple of 32)."""
        per_block = self.type.block // STEP
        step = self.g % per_block
        if n >= STEP:
            return step // (n // STEP)
        return step * (STEP // n) + self.j // (n // LANES)

    def code(self, name: str, at: int = 0):
        """The plane's code at the reader's column, shifted left by `at` (a high-bit plane's place
        in the combined code). With `at`, the step's bits move up once (a kernel's code loop j
        then hoists it) and each code takes one shift and one mask, where bits(...) << at took
        three operations."""
        plane = self._parts[name]
        word, shift = plane.index(self.g, self.j, self.l)
        value = self.load(name, word)
        if plane.signed:
            return self.ops.sign_extend(value, shift, plane.bits)
        if not at:
            return self.bits(value, shift, plane.bits)
        step_shift, code_shift = plane.shifts(self.g, self.j)
        # the highest code of a step must keep its bits after the move up by `at`
        assert STEP // LANES * plane.bits + at <= 32, f"{name}: codes shifted out of the word"
        moved = self.ops.shl(self.ops.shr(value, step_shift), at)
        return self.ops.shr(moved, code_shift) & (((1 << plane.bits) - 1) << at)

    def field(self, name: str, i=0):
        f = self._parts[name]
        index = f.group(self.g, self.j)
        if f.kind == "f32":
            return self.load(name, index * f.count + i if f.count > 1 else index)
        flat = index * f.count + i
        per_word = 32 // f.bits
        word, shift = flat // per_word, (flat % per_word) * f.bits
        raw = self.load(name, word)
        if f.kind == "s8":
            return self.ops.sign_extend(raw, shift, 8)
        value = self.bits(raw, shift, f.bits)
        return f16_to_f32(self, value) if f.kind == "f16" else value


def f16_to_f32(v: Reader, h):
    """IEEE half bits (in an unsigned int) -> float32, with integer operations only (WGSL without
    shader-f16 has no f16 type). Normal numbers move their exponent bias by 112; subnormals are
    m * 2^-24, computed as a normal float so no backend flushes them to zero."""
    magnitude = h & 0x7FFF
    negative = (h & 0x8000) != 0
    normal = v.ops.as_f32(((magnitude << 13) + 0x38000000) | ((h & 0x8000) << 16))
    tiny = v.f32(magnitude) * (2.0 ** -24)
    return v.where(magnitude < 0x400, v.where(negative, -tiny, tiny), normal)


# ---- numpy and TIR operations -------------------------------------------------------------------

class _NumpyOps:
    @staticmethod
    def f32(x):
        return np.asarray(x).astype(np.float32)

    @staticmethod
    def i32(x):
        return np.asarray(x).astype(np.int64).astype(np.int32)

    @staticmethod
    def where(c, a, b):
        return np.where(c, a, b)

    @staticmethod
    def shr(x, s):
        return (np.asarray(x, dtype=np.uint32) >> np.asarray(s, dtype=np.uint32)).astype(np.uint32)

    @staticmethod
    def shl(x, s):
        return (np.asarray(x, dtype=np.uint32) << np.asarray(s, dtype=np.uint32)).astype(np.uint32)

    @staticmethod
    def as_f32(x):
        return np.asarray(x, dtype=np.uint32).view(np.float32)

    @staticmethod
    def sign_extend(word, shift, bits):
        top = (np.asarray(word, dtype=np.uint32) << np.asarray(32 - bits - shift, dtype=np.uint32)).astype(np.uint32)
        return top.view(np.int32) >> (32 - bits)


class _TirOps:
    @staticmethod
    def f32(x):
        from tvm import tirx
        return tirx.Cast("float32", x)

    @staticmethod
    def i32(x):
        from tvm import tirx
        return tirx.Cast("int32", x)

    @staticmethod
    def where(c, a, b):
        from tvm import tirx
        return tirx.Select(c, a, b)

    @staticmethod
    def shr(x, s):
        from tvm import tirx
        return x >> (tirx.Cast("uint32", s) if not isinstance(s, int) else tirx.const(s, "uint32"))

    @staticmethod
    def shl(x, s):
        from tvm import tirx
        return x << (tirx.Cast("uint32", s) if not isinstance(s, int) else tirx.const(s, "uint32"))

    @staticmethod
    def as_f32(x):
        from tvm import tirx
        return tirx.reinterpret("float32", x)

    @staticmethod
    def sign_extend(word, shift, bits):
        # move the field to the top, then an arithmetic shift right sign-extends it
        from tvm import tirx
        up = 32 - bits - shift
        top = tirx.reinterpret("int32", word << (tirx.Cast("uint32", up) if not isinstance(up, int)
                                                 else tirx.const(up, "uint32")))
        return top >> tirx.const(32 - bits, "int32")


NUMPY_OPS, TIR_OPS = _NumpyOps(), _TirOps()


# ---- the types ------------------------------------------------------------------------------------

def _halves(x: np.ndarray) -> np.ndarray:
    """uint8 [n, 2k] little-endian -> uint16 [n, k] bit patterns."""
    return np.ascontiguousarray(x).view(np.uint16)


def _f16(x: np.ndarray) -> np.ndarray:
    return _halves(x).view(np.float16).astype(np.float32)


def _nibbles(qs: np.ndarray, runs: int) -> np.ndarray:
    """ggml's 4-bit packing: each run of bytes holds its run's weights in the low nibbles, the next
    run's in the high ones."""
    n = qs.shape[0]
    return ((qs.reshape(n, runs, 1, -1) >> np.array([0, 4], np.uint8)[None, None, :, None]) & 15).reshape(n, -1)


def _crumbs(qs: np.ndarray, runs: int) -> np.ndarray:
    """2-bit packing: each run of 32 bytes holds four runs of 32 weights, bits 0-1, 2-3, 4-5, 6-7."""
    n = qs.shape[0]
    return ((qs.reshape(n, runs, 1, 32) >> np.array([0, 2, 4, 6], np.uint8)[None, None, :, None]) & 3).reshape(n, -1)


def _bitplane(qh: np.ndarray, count: int) -> np.ndarray:
    """One bit per weight: weight 32 k + i is bit k of byte i (K-quants' high bits)."""
    n = qh.shape[0]
    return ((qh.reshape(n, 1, 32) >> np.arange(count, dtype=np.uint8)[None, :, None]) & 1).reshape(n, -1)


def _bits32(qh: np.ndarray) -> np.ndarray:
    """Weight i is bit i of a little-endian u32 (Q5_0 / Q5_1's high bits)."""
    word = np.ascontiguousarray(qh).view(np.uint32)
    return ((word >> np.arange(32, dtype=np.uint32)[None, :]) & 1).astype(np.uint8)


def _scale_min_k4(v: Reader, sub):
    """ggml's get_scale_min_k4: the 6-bit scale and min of sub-block sub (0..7) from 12 bytes;
    written with indices that stay inside the 12 bytes on both branches."""
    lo = sub % 4
    a, b, c = v.field("scales", lo), v.field("scales", lo + 4), v.field("scales", lo + 8)
    scale = v.where(sub < 4, a & 63, (c & 15) | ((a >> 6) << 4))
    low = v.where(sub < 4, b & 63, (c >> 4) | ((b >> 6) << 4))
    return scale, low


def _q3_k_scale(v: Reader):
    """Q3_K's 16 six-bit scales: low 4 bits in bytes 0-7 (two per byte), high 2 bits in bytes 8-11."""
    i = v.sub(16)
    low = v.bits(v.field("scales", i % 8), (i // 8) * 4, 4)
    high = v.bits(v.field("scales", 8 + i % 4), (i // 4) * 2, 2)
    return v.i32(low | (high << 4)) - 32


def _five(v: Reader):
    return v.code("lo") | v.code("hi", at=4)


TYPES: dict[str, WeightType] = {t.name: t for t in (
    WeightType(
        "Q4_0", 32, 18, (Plane("q", 4),), (Field("d", 32, "f16"),),
        split=lambda b: {"d": _halves(b[:, 0:2]), "q": _nibbles(b[:, 2:18], 1)},
        code=lambda v: v.f32(v.i32(v.code("q")) - 8), scale=lambda v: v.field("d")),
    WeightType(
        "Q4_1", 32, 20, (Plane("q", 4),), (Field("d", 32, "f16"), Field("m", 32, "f16")),
        split=lambda b: {"d": _halves(b[:, 0:2]), "m": _halves(b[:, 2:4]), "q": _nibbles(b[:, 4:20], 1)},
        code=lambda v: v.f32(v.code("q")), scale=lambda v: v.field("d"), offset=lambda v: v.field("m")),
    WeightType(
        # d as f16: with f32 the rows of 576 columns (padding of the 1-bit plane) would pass 1.10x
        "Q5_0", 32, 22, (Plane("lo", 4), Plane("hi", 1)), (Field("d", 32, "f16"),),
        split=lambda b: {"d": _halves(b[:, 0:2]), "hi": _bits32(b[:, 2:6]), "lo": _nibbles(b[:, 6:22], 1)},
        code=lambda v: v.f32(v.i32(_five(v)) - 16), scale=lambda v: v.field("d"), gemv_rows=2),
    WeightType(
        "Q5_1", 32, 24, (Plane("lo", 4), Plane("hi", 1)), (Field("d", 32, "f16"), Field("m", 32, "f16")),
        split=lambda b: {"d": _halves(b[:, 0:2]), "m": _halves(b[:, 2:4]), "hi": _bits32(b[:, 4:8]),
                         "lo": _nibbles(b[:, 8:24], 1)},
        code=lambda v: v.f32(_five(v)), scale=lambda v: v.field("d"), offset=lambda v: v.field("m")),
    WeightType(
        "Q8_0", 32, 34, (Plane("q", 8, signed=True),), (Field("d", 32, "f32"),),
        split=lambda b: {"d": _f16(b[:, 0:2]), "q": b[:, 2:34]},
        code=lambda v: v.f32(v.code("q")), scale=lambda v: v.field("d"), gemv_rows=2),
    WeightType(
        # ggml: d * (sc & 15) * q - dmin * (sc >> 4); a - b is a + (-b) exactly
        "Q2_K", 256, 84, (Plane("q", 2),), (Field("scales", 16, "u8"), Field("d", 256, "f32"), Field("dmin", 256, "f32")),
        split=lambda b: {"scales": b[:, 0:16], "q": _crumbs(b[:, 16:80], 2), "d": _f16(b[:, 80:82]),
                         "dmin": _f16(b[:, 82:84])},
        code=lambda v: v.f32(v.code("q")), scale=lambda v: v.field("d") * v.f32(v.field("scales") & 15),
        offset=lambda v: -(v.field("dmin") * v.f32(v.field("scales") >> 4)), sub_block=16),
    WeightType(
        "Q3_K", 256, 110, (Plane("lo", 2), Plane("hi", 1)), (Field("scales", 256, "u8", 12), Field("d", 256, "f32")),
        split=lambda b: {"hi": _bitplane(b[:, 0:32], 8), "lo": _crumbs(b[:, 32:96], 2), "scales": b[:, 96:108],
                         "d": _f16(b[:, 108:110])},
        # the high bit set means no offset: q = low 2 bits - 4 * (1 - high)
        code=lambda v: v.f32(v.i32(v.code("lo") | v.code("hi", at=2)) - 4),
        scale=lambda v: v.field("d") * v.f32(_q3_k_scale(v)), sub_block=16),
    WeightType(
        "Q4_K", 256, 144, (Plane("q", 4),), (Field("d", 256, "f32"), Field("dmin", 256, "f32"), Field("scales", 256, "u8", 12)),
        split=lambda b: {"d": _f16(b[:, 0:2]), "dmin": _f16(b[:, 2:4]), "scales": b[:, 4:16], "q": _nibbles(b[:, 16:144], 4)},
        code=lambda v: v.f32(v.code("q")), scale=lambda v: _k_scale(v), offset=lambda v: _k_offset(v)),
    WeightType(
        "Q5_K", 256, 176, (Plane("lo", 4), Plane("hi", 1)),
        (Field("d", 256, "f32"), Field("dmin", 256, "f32"), Field("scales", 256, "u8", 12)),
        split=lambda b: {"d": _f16(b[:, 0:2]), "dmin": _f16(b[:, 2:4]), "scales": b[:, 4:16],
                         "hi": _bitplane(b[:, 16:48], 8), "lo": _nibbles(b[:, 48:176], 4)},
        code=lambda v: v.f32(_five(v)), scale=lambda v: _k_scale(v), offset=lambda v: _k_offset(v)),
    WeightType(
        "Q6_K", 256, 210, (Plane("lo", 4), Plane("hi", 2)), (Field("scales", 16, "s8"), Field("d", 256, "f32")),
        split=lambda b: {"lo": _nibbles(b[:, 0:128], 2), "hi": _crumbs(b[:, 128:192], 2), "scales": b[:, 192:208],
                         "d": _f16(b[:, 208:210])},
        code=lambda v: v.f32(v.i32(v.code("lo") | v.code("hi", at=4)) - 32),
        scale=lambda v: v.field("d") * v.f32(v.field("scales")), sub_block=16, gemv_rows=2),
)}


# Q4_K / Q5_K: d * scale * q - dmin * min per 32-weight sub-block (ggml's order of operations)
def _k_scale(v: Reader):
    return v.field("d") * v.f32(_scale_min_k4(v, v.sub(32))[0])


def _k_offset(v: Reader):
    return -(v.field("dmin") * v.f32(_scale_min_k4(v, v.sub(32))[1]))


def supported() -> list[str]:
    return ["F32", "F16", "BF16", *TYPES]


# ---- GGUF blocks <-> artifact parts ----------------------------------------------------------------

def _pack_plane(codes: np.ndarray, plane: Plane) -> np.ndarray:
    n, k = codes.shape
    u = plane.unit
    padded = np.zeros((n, -(-k // u) * u), np.uint32)
    padded[:, :k] = codes.view(np.uint8) & ((1 << plane.bits) - 1)
    # [n, unit, vector, lane]: word lane of a unit holds every vector's code of that lane
    grouped = padded.reshape(n, -1, u // LANES, LANES)
    shifts = (np.arange(u // LANES, dtype=np.uint32) * plane.bits)[None, None, :, None]
    return np.bitwise_or.reduce(grouped << shifts, axis=2).astype(np.uint32).reshape(n, -1)


def _pack_field(values: np.ndarray, f: Field) -> np.ndarray:
    n = values.shape[0]
    if f.kind == "f32":
        return np.ascontiguousarray(values, dtype=np.float32)
    per_word = 32 // f.bits
    bits = values.view(np.uint8 if f.bits == 8 else np.uint16).astype(np.uint32)
    padded = np.zeros((n, -(-bits.shape[1] // per_word) * per_word), np.uint32)
    padded[:, :bits.shape[1]] = bits
    shifts = (np.arange(per_word, dtype=np.uint32) * f.bits)[None, None, :]
    return np.bitwise_or.reduce(padded.reshape(n, -1, per_word) << shifts, axis=2).astype(np.uint32)


def pack(wtype: WeightType, raw: np.ndarray) -> dict[str, np.ndarray]:
    """A GGUF tensor's bytes, uint8 [N, K / block * block_bytes], -> its artifact parts."""
    n = raw.shape[0]
    blocks = np.ascontiguousarray(raw).reshape(-1, wtype.block_bytes)
    pieces = wtype.split(blocks)
    out = {}
    for p in wtype.planes:
        out[p.name] = _pack_plane(np.ascontiguousarray(pieces[p.name]).reshape(n, -1), p)
    for f in wtype.fields:
        values = np.ascontiguousarray(pieces[f.name])
        out[f.name] = _pack_field(values.reshape(n, -1), f)
    return out


def dequantize(wtype: WeightType, parts: dict[str, np.ndarray], cols: int) -> np.ndarray:
    """float32 [N, K] from artifact parts, by the same decode the kernels run (numpy operations)."""
    c = np.arange(cols)
    reader = Reader(wtype, lambda name, index: parts[name][:, index], c // STEP, c % STEP // LANES, c % LANES, NUMPY_OPS)
    return np.asarray(wtype.value(reader), dtype=np.float32)


def artifact_bytes(wtype: WeightType, rows: int, cols: int) -> int:
    return sum(rows * shape[1] * 4 for shape, _ in wtype.part_shapes(rows, cols).values())


def gguf_bytes(wtype: WeightType, rows: int, cols: int) -> int:
    return rows * cols // wtype.block * wtype.block_bytes
