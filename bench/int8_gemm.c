// GEMM micro-kernels for the encoder's dense matmuls on wasm (issue 16, embeddings), for
// bench/int8_gemm.py: C[M,N] = A[M,K] x W[N,K]^T, f32 out, one thread.
//
//   f32_tXrY    f32 with f32x4.relaxed_madd, X tokens x Y weight rows per register block;
//   i16w16_tXrY activations rounded to int16 per token, int8 weights per row stored widened to int16,
//               i32x4.dot_i16x8_s + i32x4.add;
//   i16w8_tXrY  the same with the int8 weights widened in registers (v128.load8x8_s);
//   u7_tXrY     i32x4.relaxed_dot_i8x16_i7x16_add_s: int8 weights (signed operand a), activations per
//               token asymmetric 7-bit (operand b in [0, 127]), the zero point taken off with the
//               weight rows' precomputed sums;
//   u7s_tXrY    the same arithmetic split in i16x8.relaxed_dot_i8x16_i7x16_s, i32x4.extadd_pairwise_i16x8_s
//               and i32x4.add (V8 on x86 without VNNI lowers the fused instruction to pmaddubsw, pmaddwd
//               with a splat of ones it builds each time, paddd; the split form's pmaddwd reads a constant);
//   u6p_tXrY    6-bit activations (asymmetric, [0, 63]): two int16 dot products of 16 bytes each
//               summed in int16 (no overflow: 2 x 2 x 127 x 63 < 32768) before one widening, so 32
//               multiply-adds cost 3 multiplier instructions instead of 4;
//   i8_tXrY     int8 activations per token and int8 weights, both widened to int16, i32x4.dot_i16x8_s.
//
// All kernels take (A, sa, za, W, sw, wsum, C, M, N, K); the f32 one ignores the scales. M must be
// a multiple of the block's tokens (the caller pads), N of its rows, K of 16. Cache blocking: a
// chunk of tokens whose activations fit in L2 is swept by each NR-row weight panel (which stays in
// L1). The register block's accumulators sum lanes; they are reduced once per output at the end.
//
// peak_*: throughput loops with 12 independent accumulators and no memory traffic, one per
// instruction family, for the instruction ceilings.
#include <stdint.h>
#include <wasm_simd128.h>

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("clang loop unroll(full)")

// the four lanes' sums of four vectors, as one vector
INLINE v128_t hsum4(v128_t v0, v128_t v1, v128_t v2, v128_t v3) {
  v128_t t0 = wasm_f32x4_add(wasm_i32x4_shuffle(v0, v1, 0, 4, 2, 6), wasm_i32x4_shuffle(v0, v1, 1, 5, 3, 7));
  v128_t t1 = wasm_f32x4_add(wasm_i32x4_shuffle(v2, v3, 0, 4, 2, 6), wasm_i32x4_shuffle(v2, v3, 1, 5, 3, 7));
  return wasm_f32x4_add(wasm_i32x4_shuffle(t0, t1, 0, 1, 4, 5), wasm_i32x4_shuffle(t0, t1, 2, 3, 6, 7));
}
INLINE float hsum(v128_t v) {
  return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) +
         (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

enum { F32, I16W16, I16W8, U7, U7S, U6P, I8 };

// tokens per cache chunk: the chunk's activations in about 128 KiB of L2
INLINE int chunk_tokens(int K, int bytes, int MT) {
  int mc = (131072 / (K * bytes)) / MT * MT;
  return mc < MT ? MT : mc;
}

// one MT x NR register block over all of K, then the epilogue into C
INLINE void block(int kind, int MT, int NR, const void* A, const float* sa, const int32_t* za, const void* W,
                  const float* sw, const int32_t* wsum, float* C, int N, int K, int m0, int n0) {
  v128_t acc[4][4];
  UNROLL for (int t = 0; t < MT; t++) UNROLL for (int r = 0; r < NR; r++) acc[t][r] = wasm_i32x4_splat(0);
  if (kind == F32) {
    const float* a0 = (const float*)A + m0 * K;
    const float* w0 = (const float*)W + n0 * K;
    for (int k = 0; k < K; k += 4) {
      v128_t a[4];
      UNROLL for (int t = 0; t < MT; t++) a[t] = wasm_v128_load(a0 + t * K + k);
      UNROLL for (int r = 0; r < NR; r++) {
        v128_t w = wasm_v128_load(w0 + r * K + k);
        UNROLL for (int t = 0; t < MT; t++) acc[t][r] = wasm_f32x4_relaxed_madd(a[t], w, acc[t][r]);
      }
    }
  } else if (kind == U7) {
    const uint8_t* a0 = (const uint8_t*)A + m0 * K;
    const int8_t* w0 = (const int8_t*)W + n0 * K;
    for (int k = 0; k < K; k += 16) {
      v128_t a[4];
      UNROLL for (int t = 0; t < MT; t++) a[t] = wasm_v128_load(a0 + t * K + k);
      UNROLL for (int r = 0; r < NR; r++) {
        v128_t w = wasm_v128_load(w0 + r * K + k);
        UNROLL for (int t = 0; t < MT; t++) acc[t][r] = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(w, a[t], acc[t][r]);
      }
    }
  } else if (kind == U7S || kind == U6P) {
    const uint8_t* a0 = (const uint8_t*)A + m0 * K;
    const int8_t* w0 = (const int8_t*)W + n0 * K;
    const int step = kind == U6P ? 32 : 16;
    for (int k = 0; k < K; k += step) {
      v128_t a[4], b[4];
      UNROLL for (int t = 0; t < MT; t++) {
        a[t] = wasm_v128_load(a0 + t * K + k);
        if (kind == U6P) b[t] = wasm_v128_load(a0 + t * K + k + 16);
      }
      UNROLL for (int r = 0; r < NR; r++) {
        v128_t w = wasm_v128_load(w0 + r * K + k), w1;
        if (kind == U6P) w1 = wasm_v128_load(w0 + r * K + k + 16);
        UNROLL for (int t = 0; t < MT; t++) {
          v128_t d = wasm_i16x8_relaxed_dot_i8x16_i7x16(w, a[t]);
          if (kind == U6P) d = wasm_i16x8_add(d, wasm_i16x8_relaxed_dot_i8x16_i7x16(w1, b[t]));
          acc[t][r] = wasm_i32x4_add(acc[t][r], wasm_i32x4_extadd_pairwise_i16x8(d));
        }
      }
    }
  } else {  // the int16 dot product, operands int16 in memory or int8 widened on load
    const int a_bytes = kind == I8 ? 1 : 2, w_bytes = kind == I16W16 ? 2 : 1;
    const char* a0 = (const char*)A + m0 * K * a_bytes;
    const char* w0 = (const char*)W + n0 * K * w_bytes;
    for (int k = 0; k < K; k += 8) {
      v128_t a[4];
      UNROLL for (int t = 0; t < MT; t++) {
        const char* p = a0 + (t * K + k) * a_bytes;
        a[t] = a_bytes == 1 ? wasm_i16x8_load8x8(p) : wasm_v128_load(p);
      }
      UNROLL for (int r = 0; r < NR; r++) {
        const char* p = w0 + (r * K + k) * w_bytes;
        v128_t w = w_bytes == 1 ? wasm_i16x8_load8x8(p) : wasm_v128_load(p);
        UNROLL for (int t = 0; t < MT; t++) acc[t][r] = wasm_i32x4_add(acc[t][r], wasm_i32x4_dot_i16x8(a[t], w));
      }
    }
  }
  // epilogue: lane sums (in f32: int16 lanes may sum past int32), then the scales
  UNROLL for (int t = 0; t < MT; t++) {
    float* c = C + (m0 + t) * N + n0;
    if (kind != F32) UNROLL for (int r = 0; r < NR; r++) acc[t][r] = wasm_f32x4_convert_i32x4(acc[t][r]);
    if (NR == 4) {
      v128_t s = hsum4(acc[t][0], acc[t][1], acc[t][2], acc[t][3]);
      if (kind != F32) {
        if (kind == U7 || kind == U7S || kind == U6P)
          s = wasm_f32x4_sub(s, wasm_f32x4_mul(wasm_f32x4_splat((float)za[m0 + t]),
                                               wasm_f32x4_convert_i32x4(wasm_v128_load(wsum + n0))));
        s = wasm_f32x4_mul(s, wasm_f32x4_mul(wasm_f32x4_splat(sa[m0 + t]), wasm_v128_load(sw + n0)));
      }
      wasm_v128_store(c, s);
    } else {
      UNROLL for (int r = 0; r < NR; r++) {
        float s = hsum(acc[t][r]);
        if (kind == U7 || kind == U7S || kind == U6P) s -= (float)za[m0 + t] * (float)wsum[n0 + r];
        c[r] = kind == F32 ? s : s * sa[m0 + t] * sw[n0 + r];
      }
    }
  }
}

INLINE void gemm(int kind, int MT, int NR, const void* A, const float* sa, const int32_t* za, const void* W,
                 const float* sw, const int32_t* wsum, float* C, int M, int N, int K) {
  const int a_bytes = kind == F32 ? 4 : kind == I16W16 || kind == I16W8 ? 2 : 1;
  const int mc = chunk_tokens(K, a_bytes, MT);
  for (int c0 = 0; c0 < M; c0 += mc) {
    int c1 = c0 + mc < M ? c0 + mc : M;
    for (int n0 = 0; n0 < N; n0 += NR)
      for (int m0 = c0; m0 < c1; m0 += MT) block(kind, MT, NR, A, sa, za, W, sw, wsum, C, N, K, m0, n0);
  }
}

#define KERNEL(name, kind, MT, NR)                                                                          \
  void name(const void* A, const float* sa, const int32_t* za, const void* W, const float* sw,            \
            const int32_t* wsum, float* C, int M, int N, int K) {                                           \
    gemm(kind, MT, NR, A, sa, za, W, sw, wsum, C, M, N, K);                                                 \
  }
#define FAMILY(prefix, kind) \
  KERNEL(prefix##_t2r4, kind, 2, 4) KERNEL(prefix##_t3r3, kind, 3, 3) KERNEL(prefix##_t4r2, kind, 4, 2) \
  KERNEL(prefix##_t3r4, kind, 3, 4) KERNEL(prefix##_t2r2, kind, 2, 2) KERNEL(prefix##_t1r4, kind, 1, 4)

FAMILY(f32, F32)
FAMILY(i16w16, I16W16)
FAMILY(i16w8, I16W8)
FAMILY(u7, U7)
FAMILY(u7s, U7S)
FAMILY(u6p, U6P)
FAMILY(i8, I8)

// ---- quantizers (activations per call, as a model would; weights once) ----

INLINE float row_absmax(const float* x, int K) {
  v128_t m = wasm_f32x4_splat(0.0f);
  for (int k = 0; k < K; k += 4) m = wasm_f32x4_max(m, wasm_f32x4_abs(wasm_v128_load(x + k)));
  float a = wasm_f32x4_extract_lane(m, 0), b = wasm_f32x4_extract_lane(m, 1);
  float c = wasm_f32x4_extract_lane(m, 2), d = wasm_f32x4_extract_lane(m, 3);
  a = a > b ? a : b, c = c > d ? c : d;
  return a > c ? a : c;
}

// symmetric per token: q = rint(x / s), s = max|x| / levels; int16 (levels 32767) or int8 (127) out
void quant_sym(const float* A, int M, int K, float levels, void* Q, int bytes, float* sa) {
  for (int m = 0; m < M; m++) {
    const float* x = A + m * K;
    float s = row_absmax(x, K) / levels, inv = s > 0.0f ? 1.0f / s : 0.0f;
    sa[m] = s;
    v128_t vinv = wasm_f32x4_splat(inv);
    for (int k = 0; k < K; k += 8) {
      v128_t lo = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(x + k), vinv)));
      v128_t hi = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(x + k + 4), vinv)));
      v128_t q16 = wasm_i16x8_narrow_i32x4(lo, hi);
      if (bytes == 2) wasm_v128_store((int16_t*)Q + m * K + k, q16);
      else wasm_v128_store64_lane((int8_t*)Q + m * K + k, wasm_i8x16_narrow_i16x8(q16, q16), 0);
    }
  }
}

// asymmetric per token: x ~ s (q - z), q in [0, levels] (127: 7 bits, 63: 6 bits)
void quant_u7(const float* A, int M, int K, int levels, uint8_t* Q, float* sa, int32_t* za) {
  for (int m = 0; m < M; m++) {
    const float* x = A + m * K;
    v128_t lo = wasm_v128_load(x), hi = lo;
    for (int k = 4; k < K; k += 4) {
      v128_t v = wasm_v128_load(x + k);
      lo = wasm_f32x4_min(lo, v), hi = wasm_f32x4_max(hi, v);
    }
    float mn = wasm_f32x4_extract_lane(lo, 0), mx = wasm_f32x4_extract_lane(hi, 0);
    for (int l = 1; l < 4; l++) {
      float a = ((float*)&lo)[l], b = ((float*)&hi)[l];
      mn = a < mn ? a : mn, mx = b > mx ? b : mx;
    }
    if (mn > 0.0f) mn = 0.0f;  // zero stays exact
    if (mx < 0.0f) mx = 0.0f;
    float s = (mx - mn) / (float)levels, inv = s > 0.0f ? 1.0f / s : 0.0f;
    int32_t z = (int32_t)__builtin_rintf(-mn * inv);
    sa[m] = s, za[m] = z;
    v128_t vinv = wasm_f32x4_splat(inv), vz = wasm_i32x4_splat(z);
    for (int k = 0; k < K; k += 16) {
      v128_t q[4];
      for (int j = 0; j < 4; j++)
        q[j] = wasm_i32x4_add(vz, wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(
                                      wasm_f32x4_mul(wasm_v128_load(x + k + 4 * j), vinv))));
      v128_t q16 = wasm_i16x8_narrow_i32x4(q[0], q[1]), r16 = wasm_i16x8_narrow_i32x4(q[2], q[3]);
      v128_t q8 = wasm_u8x16_narrow_i16x8(q16, r16);
      wasm_v128_store(Q + m * K + k, wasm_u8x16_min(q8, wasm_u8x16_splat((uint8_t)levels)));
    }
  }
}

// weights: int8 per row (symmetric, 127 levels), also widened to int16, and each row's code sum
void quant_weights(const float* W, int N, int K, int8_t* W8, int16_t* W16, float* sw, int32_t* wsum) {
  for (int n = 0; n < N; n++) {
    const float* x = W + n * K;
    float s = row_absmax(x, K) / 127.0f, inv = s > 0.0f ? 1.0f / s : 0.0f;
    sw[n] = s;
    int32_t total = 0;
    for (int k = 0; k < K; k++) {
      int32_t q = (int32_t)__builtin_rintf(x[k] * inv);
      W8[n * K + k] = (int8_t)q, W16[n * K + k] = (int16_t)q;
      total += q;
    }
    wsum[n] = total;
  }
}

// ---- instruction ceilings: 12 independent accumulators, no loads or stores in the loop ----
#define NACC 12
#define PEAK_END                                                                 \
  v128_t total = acc[0];                                                         \
  for (int j = 1; j < NACC; j++) total = wasm_i32x4_add(total, acc[j]);          \
  return wasm_i32x4_extract_lane(total, 0);

// f32x4.relaxed_madd: acc = x * y + acc (x, y loop-invariant; the intrinsic is opaque to LLVM)
int peak_f32_madd(int iters, float xs, float ys) {
  v128_t x = wasm_f32x4_splat(xs), y = wasm_f32x4_splat(ys), acc[NACC];
  for (int j = 0; j < NACC; j++) acc[j] = wasm_f32x4_splat((float)j);
  for (int i = 0; i < iters; i++) UNROLL for (int j = 0; j < NACC; j++) acc[j] = wasm_f32x4_relaxed_madd(x, y, acc[j]);
  PEAK_END
}
// f32x4.mul + f32x4.add: acc = acc + acc * y (the product depends on acc, so it cannot be hoisted)
int peak_f32_mul_add(int iters, float xs, float ys) {
  (void)xs;
  v128_t y = wasm_f32x4_splat(ys), acc[NACC];
  for (int j = 0; j < NACC; j++) acc[j] = wasm_f32x4_splat(1.0f + (float)j);
  for (int i = 0; i < iters; i++) UNROLL for (int j = 0; j < NACC; j++) acc[j] = wasm_f32x4_add(acc[j], wasm_f32x4_mul(acc[j], y));
  PEAK_END
}
// i32x4.dot_i16x8_s + i32x4.add: acc = acc + dot(acc, y)
int peak_dot_i16(int iters, float xs, float ys) {
  (void)xs;
  v128_t y = wasm_i16x8_splat((int16_t)ys), acc[NACC];
  for (int j = 0; j < NACC; j++) acc[j] = wasm_i32x4_splat(j);
  for (int i = 0; i < iters; i++) UNROLL for (int j = 0; j < NACC; j++) acc[j] = wasm_i32x4_add(acc[j], wasm_i32x4_dot_i16x8(acc[j], y));
  PEAK_END
}
// i32x4.relaxed_dot_i8x16_i7x16_add_s: acc = dot(x, y) + acc (x, y loop-invariant, opaque to LLVM)
int peak_relaxed_dot(int iters, float xs, float ys) {
  v128_t x = wasm_i8x16_splat((int8_t)xs), y = wasm_i8x16_splat((int8_t)ys), acc[NACC];
  for (int j = 0; j < NACC; j++) acc[j] = wasm_i32x4_splat(j);
  for (int i = 0; i < iters; i++) UNROLL for (int j = 0; j < NACC; j++) acc[j] = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x, y, acc[j]);
  PEAK_END
}
// the same with the accumulator also as operand a: a dependent chain through the whole instruction
int peak_relaxed_dot_chain(int iters, float xs, float ys) {
  (void)xs;
  v128_t y = wasm_i8x16_splat((int8_t)ys), acc[NACC];
  for (int j = 0; j < NACC; j++) acc[j] = wasm_i32x4_splat(j);
  for (int i = 0; i < iters; i++) UNROLL for (int j = 0; j < NACC; j++) acc[j] = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(acc[j], y, acc[j]);
  PEAK_END
}
// the split form: acc = acc + extadd_pairwise(i16x8 relaxed dot(acc, y)), a chain per accumulator
int peak_relaxed_dot_split(int iters, float xs, float ys) {
  (void)xs;
  v128_t y = wasm_i8x16_splat((int8_t)ys), acc[NACC];
  for (int j = 0; j < NACC; j++) acc[j] = wasm_i32x4_splat(j);
  for (int i = 0; i < iters; i++)
    UNROLL for (int j = 0; j < NACC; j++)
      acc[j] = wasm_i32x4_add(acc[j], wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_relaxed_dot_i8x16_i7x16(acc[j], y)));
  PEAK_END
}
// the 6-bit pair form: two i16x8 relaxed dots summed in int16, one widening, one add (32 multiply-adds)
int peak_relaxed_dot_pair(int iters, float xs, float ys) {
  v128_t x = wasm_i8x16_splat((int8_t)xs), y = wasm_i8x16_splat((int8_t)ys), acc[NACC];
  for (int j = 0; j < NACC; j++) acc[j] = wasm_i32x4_splat(j);
  for (int i = 0; i < iters; i++)
    UNROLL for (int j = 0; j < NACC; j++)
      acc[j] = wasm_i32x4_add(acc[j], wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_add(
                   wasm_i16x8_relaxed_dot_i8x16_i7x16(acc[j], y), wasm_i16x8_relaxed_dot_i8x16_i7x16(acc[j], x))));
  PEAK_END
}
