// Candidate 4-bit decode GEMVs for wasm (issue 20: decode at 0.38-0.45 of native llama.cpp), beside
// the shipped integer-dot kernel (webrt/compile/int_dot.c, included below), for bench/relaxed_dot_gemv.py.
// One token, y = x @ W^T, W in 4-bit groups of 32 columns with an f32 scale and min per group:
//
//   i16_r4      int_dot.c's arithmetic (activations rounded to 16 bits, nibbles widened to i16,
//               i32x4.dot_i16x8_s) on 4 rows at a time, so each activation vector is loaded once
//               for 4 rows;
//   relaxed_r1, relaxed_r4  i32x4.relaxed_dot_i8x16_i7x16_add_s (16 products per instruction; V8 on x86:
//               pmaddubsw + pmaddwd) with the nibbles as the 7-bit operand and activations rounded to
//               15 bits, split as a = 128 hi + lo (hi signed 8-bit, lo in [0, 127]): two dot chains,
//               recombined exactly as (hi << 7) + lo, so the same precision class as int_dot.c;
//               1 or 4 rows at a time;
//   relaxed_i8_r1, relaxed_i8_r4  the same instruction with activations rounded to 8 bits, as llama.cpp's Q8 dot
//               products (one chain; 127 levels: the precision int_dot.c gave up, bench/int_dot.md).
//
// Layout of these candidates: per row and group, 16 bytes whose low nibble is column b and whose
// high nibble is column 16 + b. Each kernel quantizes the activations on every call, as in a model.
#include <stdint.h>
#include <wasm_simd128.h>

#include "../webrt/compile/int_dot.c"

// the TVM runtime calls int_dot.c makes, for one thread: the task runs here; the workspace is a
// static pool (the bench's largest K)
static char pool[1 << 20] __attribute__((aligned(64)));
int TVMBackendParallelLaunch(FTVMParallelLambda lambda, void* cdata, int num_task) {
  TVMParallelGroupEnv env = {0, 1};
  (void)num_task;
  return lambda(0, &env, cdata);
}
void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code, int dtype_bits) {
  (void)device_type, (void)device_id, (void)dtype_code, (void)dtype_bits;
  return nbytes <= sizeof(pool) ? pool : 0;
}
int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr) {
  (void)device_type, (void)device_id, (void)ptr;
  return 0;
}

#define MAX_K 16384
static int8_t hi_codes[MAX_K] __attribute__((aligned(16)));
static int8_t lo_codes[MAX_K] __attribute__((aligned(16)));
static int16_t wide_codes[MAX_K] __attribute__((aligned(16)));
static float group_scale[MAX_K / GROUP], group_sum[MAX_K / GROUP];

// per group: d = max|x| / levels, codes rint(x / d); the exact sum of x for the min term
static void quantize(const float* x, int32_t groups, float levels, int split) {
  for (int32_t g = 0; g < groups; g++) {
    const float* v = x + g * GROUP;
    float amax = 0.0f, total = 0.0f;
    for (int c = 0; c < GROUP; c++) {
      float a = v[c] < 0 ? -v[c] : v[c];
      amax = a > amax ? a : amax;
      total += v[c];
    }
    float d = amax / levels, inv = d > 0.0f ? 1.0f / d : 0.0f;
    for (int c = 0; c < GROUP; c++) {
      int32_t a = (int32_t)__builtin_rintf(v[c] * inv);
      wide_codes[g * GROUP + c] = (int16_t)a;
      hi_codes[g * GROUP + c] = (int8_t)(split ? a >> 7 : a);
      lo_codes[g * GROUP + c] = (int8_t)(a & 127);
    }
    group_scale[g] = d;
    group_sum[g] = total;
  }
}

static inline float lanes_sum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}

enum { WIDE16, SPLIT15, BYTE8 };  // activation codes: int16 (int_dot.c's), 15 bits as two bytes, 8 bits

// one group's dot product of 32 nibbles (packed) with the activation codes of group g
static inline __attribute__((always_inline)) v128_t group_dot(v128_t packed, int32_t g, const int MODE) {
  const v128_t nl = wasm_v128_and(packed, wasm_i8x16_splat(15)), nh = wasm_u8x16_shr(packed, 4);
  const v128_t zero = wasm_i32x4_splat(0);
  if (MODE == WIDE16) {
    const int16_t* a = wide_codes + g * GROUP;
    return wasm_i32x4_add(
        wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_u16x8_extend_low_u8x16(nl), wasm_v128_load(a)),
                       wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(nl), wasm_v128_load(a + 8))),
        wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_u16x8_extend_low_u8x16(nh), wasm_v128_load(a + 16)),
                       wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(nh), wasm_v128_load(a + 24))));
  }
  const int8_t* h = hi_codes + g * GROUP;
  v128_t dot = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(wasm_v128_load(h), nl, zero);
  dot = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(wasm_v128_load(h + 16), nh, dot);
  if (MODE == BYTE8) return dot;
  const int8_t* l = lo_codes + g * GROUP;
  v128_t los = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(wasm_v128_load(l), nl, zero);
  los = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(wasm_v128_load(l + 16), nh, los);
  return wasm_i32x4_add(wasm_i32x4_shl(dot, 7), los);  // a = 128 hi + lo
}

// ROWS rows at a time (n a multiple of ROWS): the activation codes of a group stay in cache for them
static inline __attribute__((always_inline)) void gemv(const float* x, const uint8_t* q, const float* s,
                                                       const float* m, float* out, int32_t n, int32_t k,
                                                       const int MODE, const int ROWS) {
  const int32_t groups = k / GROUP;
  quantize(x, groups, MODE == WIDE16 ? 32767.0f : MODE == SPLIT15 ? 16383.0f : 127.0f, MODE == SPLIT15);
  for (int32_t row = 0; row < n; row += ROWS) {
    v128_t acc[4];
    float mins[4];
    for (int r = 0; r < ROWS; r++) acc[r] = wasm_f32x4_splat(0.0f), mins[r] = 0.0f;
    for (int32_t g = 0; g < groups; g++) {
      for (int r = 0; r < ROWS; r++) {
        const int64_t at = (int64_t)(row + r) * groups + g;
        const v128_t dot = group_dot(wasm_v128_load(q + at * 16), g, MODE);
        acc[r] = wasm_f32x4_add(acc[r], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(dot), wasm_f32x4_splat(s[at] * group_scale[g])));
        mins[r] += m[at] * group_sum[g];
      }
    }
    for (int r = 0; r < ROWS; r++) out[row + r] = lanes_sum(acc[r]) + mins[r];
  }
}

#define KERNEL(name, mode, rows) \
  void name(const float* x, const uint8_t* q, const float* s, const float* m, float* out, int32_t n, int32_t k) { \
    gemv(x, q, s, m, out, n, k, mode, rows);                                                                   \
  }
KERNEL(i16_r4, WIDE16, 4)
KERNEL(relaxed_r1, SPLIT15, 1)
KERNEL(relaxed_r4, SPLIT15, 4)
KERNEL(relaxed_i8_r1, BYTE8, 1)
KERNEL(relaxed_i8_r4, BYTE8, 4)

// the shipped kernel on the same bytes, read in its own layout (int_dot.c's header); one token
void shipped(const float* x, const uint8_t* q, const float* s, const float* m, float* out, int32_t n, int32_t k) {
  webrt_int_dot(x, (const uint32_t*)q, s, m, 0, 4, out, 1, n, k);
}
