// Integer-dot matmul for 4-bit weights in the group layout (webrt/quantize.py: per 32 columns, four
// u32 words whose nibble j of word l is column 4 j + l, with an f32 scale s and min m; GGUF Q4_0,
// Q4_1 and Q4_K's code plane is the same, with s and m from the matmul's decode stages, and Q4_0's
// min -8 s) and for GGUF Q8_0's signed 8-bit codes (webrt/weight_types.py's plane: per 16 columns,
// four words whose byte j of word l is column 4 j + l; no min), against
// activations quantized to 16-bit integers per 32 columns on the fly (llama.cpp's Q8 dot products
// round them to 8 bits; see LEVELS):
//
//   sum_c x_c (s q_c + m)  ~=  s d sum_c (a_c q_c) + m sum_c x_c,   a_c = rint(x_c / d), d = max|x| / LEVELS
//
// The first sum is exact integer arithmetic (i32x4.dot_i16x8_s on SIMD builds); only the rounding
// of x to a_c d differs from the f32 kernel; the min term uses the exact sum of x.
//
// Called from the TIR of a fused function (webrt/compile/int_dot.py replaces the qmatmul block by a
// call here; the fused epilogue stays TIR). Weight rows are split over the thread pool with
// TVMBackendParallelLaunch (wasm_support.c), which runs serially in one-thread builds.
#include <stdint.h>
#ifdef __wasm_simd128__
#include <wasm_simd128.h>
#endif

typedef struct { void* sync_handle; int32_t num_task; } TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv* penv, void* cdata);
int TVMBackendParallelLaunch(FTVMParallelLambda lambda, void* cdata, int num_task);
void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code, int dtype_bits);
int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr);

#define GROUP 32
#define TOKENS 4  // tokens sharing each decoded weight vector (register block of a prefill)
// Activation codes span [-LEVELS, LEVELS]. The weights are widened to int16 for i32x4.dot_i16x8_s
// anyway, so 16-bit activations cost the same instructions as llama.cpp's 8-bit ones (LEVELS 127)
// and round 258x finer: with 127 the default model's logits moved by up to 1.6 and 2 of 3 greedy
// chats left transformers' tokens (bench/int_dot.md). No overflow: a lane sums 8 products of
// |a| <= 32767 and |q| <= 128 per group, at most 3.4e7 < 2^31.
#define LEVELS 32767.0f

// One token's activations: per group, 32 int16 codes in the order the weight vectors unpack (4-bit:
// 16 low nibbles, then 16 high nibbles; 8-bit: 16 bytes of one vector, then the next; byte b of a
// vector is word b / 4, byte b % 4), the scale d and the exact sum of x.
typedef struct {
  const int16_t* codes;  // [m][groups * 32]
  const float* scale;    // [m][groups]
  const float* sum;      // [m][groups]
  const uint32_t* qweight;
  const float* scales;
  const float* mins;     // NULL: no min (8-bit codes); unused when min_is_minus8_scale
  int32_t min_is_minus8_scale;
  int32_t bits;          // 4 or 8 (signed)
  float* out;            // [m][n]
  int32_t m, n, groups;
} Job;

// column of the group held by position p of the unpack order (see above)
static inline int column_at(int p, int bits) {
  int b = p & 15;
  if (bits == 8) return 16 * (p >> 4) + 4 * (b & 3) + (b >> 2);
  return 8 * (b & 3) + 4 * (p >> 4) + (b >> 2);
}

static void quantize_activations(const float* x, int32_t m, int32_t groups, int bits, int16_t* codes, float* scale,
                                 float* sum) {
  for (int32_t t = 0; t < m; t++) {
    for (int32_t g = 0; g < groups; g++) {
      const float* v = x + ((int64_t)t * groups + g) * GROUP;
      float amax = 0.0f, total = 0.0f;
      for (int c = 0; c < GROUP; c++) {
        float a = v[c] < 0 ? -v[c] : v[c];
        amax = a > amax ? a : amax;
        total += v[c];
      }
      float d = amax / LEVELS;
      float inv = d > 0.0f ? 1.0f / d : 0.0f;
      int16_t* out = codes + ((int64_t)t * groups + g) * GROUP;
      for (int p = 0; p < GROUP; p++) out[p] = (int16_t)__builtin_rintf(v[column_at(p, bits)] * inv);
      scale[(int64_t)t * groups + g] = d;
      sum[(int64_t)t * groups + g] = total;
    }
  }
}

// out[t][row] for rows [begin, end) and tokens [t0, t0 + T), codes of BITS bits (4 or 8)
static inline __attribute__((always_inline)) void rows_for_tokens(const Job* job, int32_t begin, int32_t end,
                                                                  int32_t t0, const int T, const int BITS) {
  const int32_t groups = job->groups;
  const int32_t words = BITS;  // u32 words per group of 32 codes
  for (int32_t row = begin; row < end; row++) {
    const uint32_t* w = job->qweight + (int64_t)row * groups * words;
    const float* s = job->scales + (int64_t)row * groups;
    const float* mn = job->mins ? job->mins + (int64_t)row * groups : 0;
    const int32_t minus8 = job->min_is_minus8_scale;
    float minsum[TOKENS] = {0};
#ifdef __wasm_simd128__
    v128_t acc[TOKENS];
    for (int t = 0; t < T; t++) acc[t] = wasm_f32x4_splat(0.0f);
    for (int32_t g = 0; g < groups; g++) {
      v128_t w0, w1, w2, w3;
      if (BITS == 8) {
        v128_t first = wasm_v128_load(w + g * 8), second = wasm_v128_load(w + g * 8 + 4);
        w0 = wasm_i16x8_extend_low_i8x16(first), w1 = wasm_i16x8_extend_high_i8x16(first);
        w2 = wasm_i16x8_extend_low_i8x16(second), w3 = wasm_i16x8_extend_high_i8x16(second);
      } else {
        v128_t packed = wasm_v128_load(w + g * 4);
        v128_t lo = wasm_v128_and(packed, wasm_i8x16_splat(15));
        v128_t hi = wasm_u8x16_shr(packed, 4);
        w0 = wasm_u16x8_extend_low_u8x16(lo), w1 = wasm_u16x8_extend_high_u8x16(lo);
        w2 = wasm_u16x8_extend_low_u8x16(hi), w3 = wasm_u16x8_extend_high_u8x16(hi);
      }
      for (int t = 0; t < T; t++) {
        int64_t at = (int64_t)(t0 + t) * groups + g;
        const int16_t* a = job->codes + at * GROUP;
        v128_t dot = wasm_i32x4_add(
            wasm_i32x4_add(wasm_i32x4_dot_i16x8(w0, wasm_v128_load(a)), wasm_i32x4_dot_i16x8(w1, wasm_v128_load(a + 8))),
            wasm_i32x4_add(wasm_i32x4_dot_i16x8(w2, wasm_v128_load(a + 16)), wasm_i32x4_dot_i16x8(w3, wasm_v128_load(a + 24))));
        acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(dot), wasm_f32x4_splat(s[g] * job->scale[at])));
        if (BITS == 4) minsum[t] += (minus8 ? -8.0f * s[g] : mn[g]) * job->sum[at];
      }
    }
    for (int t = 0; t < T; t++) {
      float total = wasm_f32x4_extract_lane(acc[t], 0) + wasm_f32x4_extract_lane(acc[t], 1) +
                    wasm_f32x4_extract_lane(acc[t], 2) + wasm_f32x4_extract_lane(acc[t], 3);
      job->out[(int64_t)(t0 + t) * job->n + row] = total + minsum[t];
    }
#else
    float acc[TOKENS] = {0};
    for (int32_t g = 0; g < groups; g++) {
      const uint8_t* bytes = (const uint8_t*)(w + g * words);
      for (int t = 0; t < T; t++) {
        int64_t at = (int64_t)(t0 + t) * groups + g;
        const int16_t* a = job->codes + at * GROUP;
        int32_t dot = 0;
        if (BITS == 8) {
          for (int p = 0; p < GROUP; p++) dot += (int8_t)bytes[p] * a[p];
        } else {
          for (int b = 0; b < 16; b++) dot += (bytes[b] & 15) * a[b] + (bytes[b] >> 4) * a[16 + b];
        }
        acc[t] += (float)dot * (s[g] * job->scale[at]);
        if (BITS == 4) minsum[t] += (minus8 ? -8.0f * s[g] : mn[g]) * job->sum[at];
      }
    }
    for (int t = 0; t < T; t++) job->out[(int64_t)(t0 + t) * job->n + row] = acc[t] + minsum[t];
#endif
  }
}

// every token of rows [begin, end): token blocks outside rows, so the rows stay in cache across the blocks
static inline __attribute__((always_inline)) void all_tokens(const Job* job, int32_t begin, int32_t end, const int BITS) {
  int32_t t0 = 0;
  for (; t0 + TOKENS <= job->m; t0 += TOKENS) rows_for_tokens(job, begin, end, t0, TOKENS, BITS);
  switch (job->m - t0) {
    case 3: rows_for_tokens(job, begin, end, t0, 3, BITS); break;
    case 2: rows_for_tokens(job, begin, end, t0, 2, BITS); break;
    case 1: rows_for_tokens(job, begin, end, t0, 1, BITS); break;
    default: break;
  }
}

static int rows_task(int task, TVMParallelGroupEnv* env, void* data) {
  const Job* job = (const Job*)data;
  int32_t begin = (int32_t)((int64_t)job->n * task / env->num_task);
  int32_t end = (int32_t)((int64_t)job->n * (task + 1) / env->num_task);
  // one copy of the loops per code width, each with its unpacking inlined
  if (job->bits == 8) all_tokens(job, begin, end, 8);
  else all_tokens(job, begin, end, 4);
  return 0;
}

// x [m, k] float32 @ W^T -> out [m, n]; W [n, k] in the 4-bit group layout, each group's min
// mins[row][group], or -8 * its scale when min_is_minus8_scale (Q4_0); or, with bits 8, Q8_0's signed
// codes (mins unused). Returns 0, or -1 when the workspace could not be allocated or a task failed.
int32_t webrt_int_dot(const float* x, const uint32_t* qweight, const float* scales, const float* mins,
                      int32_t min_is_minus8_scale, int32_t bits, float* out, int32_t m, int32_t n, int32_t k) {
  int32_t groups = k / GROUP;
  uint64_t codes_bytes = (uint64_t)m * k * sizeof(int16_t);
  uint64_t field_bytes = (uint64_t)m * groups * sizeof(float);
  char* work = (char*)TVMBackendAllocWorkspace(1, 0, codes_bytes + 2 * field_bytes + 128, 2, 32);
  if (!work) return -1;
  int16_t* codes = (int16_t*)work;
  float* scale = (float*)(work + ((codes_bytes + 63) & ~(uint64_t)63));
  float* sum = scale + m * groups;
  quantize_activations(x, m, groups, bits, codes, scale, sum);
  Job job = {codes, scale, sum, qweight, scales, bits == 8 ? 0 : mins, min_is_minus8_scale, bits, out, m, n, groups};
  int rc = TVMBackendParallelLaunch(rows_task, &job, 0);
  TVMBackendFreeWorkspace(1, 0, work);
  return rc == 0 ? 0 : -1;
}
