// Raw limits of WebAssembly in this browser, for the roofline: a SIMD128 register-blocked f32
// matmul (compute roof) and a streaming f32 sum (memory roof). Built by webrt/bench/roofline.py
// with zig's clang for wasm32 +simd128, the features the TVM-compiled kernels use.

#include <stdint.h>
#include <wasm_simd128.h>

extern unsigned char __heap_base;
static uintptr_t heap_top = 0;

// Bump allocator, 64-byte aligned; grows memory as needed. Nothing is freed.
__attribute__((export_name("bench_alloc"))) void* bench_alloc(uint32_t bytes) {
  if (!heap_top) heap_top = (uintptr_t)&__heap_base;
  uintptr_t p = (heap_top + 63) & ~(uintptr_t)63;
  uintptr_t end = p + bytes;
  uintptr_t have = __builtin_wasm_memory_size(0) * 65536u;
  if (end > have && __builtin_wasm_memory_grow(0, (end - have + 65535) / 65536) < 0) return 0;
  heap_top = end;
  return (void*)p;
}

// C[M,N] = A[M,K] B[K,N], row-major; M % 4 == 0, N % 8 == 0. Each step keeps a 4x8 block of C in
// eight vector accumulators and reads one 8-wide row of B per k.
__attribute__((export_name("matmul"))) void matmul(const float* a, const float* b, float* c, int m, int n, int k) {
  for (int i = 0; i < m; i += 4) {
    for (int j = 0; j < n; j += 8) {
      v128_t c00 = wasm_f32x4_splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
      const float* a0 = a + i * k;
      for (int p = 0; p < k; p++) {
        const float* bp = b + p * n + j;
        v128_t b0 = wasm_v128_load(bp), b1 = wasm_v128_load(bp + 4);
        v128_t x0 = wasm_f32x4_splat(a0[p]), x1 = wasm_f32x4_splat(a0[k + p]);
        v128_t x2 = wasm_f32x4_splat(a0[2 * k + p]), x3 = wasm_f32x4_splat(a0[3 * k + p]);
        c00 = wasm_f32x4_add(c00, wasm_f32x4_mul(x0, b0)); c01 = wasm_f32x4_add(c01, wasm_f32x4_mul(x0, b1));
        c10 = wasm_f32x4_add(c10, wasm_f32x4_mul(x1, b0)); c11 = wasm_f32x4_add(c11, wasm_f32x4_mul(x1, b1));
        c20 = wasm_f32x4_add(c20, wasm_f32x4_mul(x2, b0)); c21 = wasm_f32x4_add(c21, wasm_f32x4_mul(x2, b1));
        c30 = wasm_f32x4_add(c30, wasm_f32x4_mul(x3, b0)); c31 = wasm_f32x4_add(c31, wasm_f32x4_mul(x3, b1));
      }
      float* cp = c + i * n + j;
      wasm_v128_store(cp, c00); wasm_v128_store(cp + 4, c01);
      wasm_v128_store(cp + n, c10); wasm_v128_store(cp + n + 4, c11);
      wasm_v128_store(cp + 2 * n, c20); wasm_v128_store(cp + 2 * n + 4, c21);
      wasm_v128_store(cp + 3 * n, c30); wasm_v128_store(cp + 3 * n + 4, c31);
    }
  }
}

// The sum of x[0..n), n % 16 == 0: four independent vector accumulators, so loads are the limit.
__attribute__((export_name("sum"))) float sum(const float* x, int n) {
  v128_t s0 = wasm_f32x4_splat(0), s1 = s0, s2 = s0, s3 = s0;
  for (int i = 0; i < n; i += 16) {
    s0 = wasm_f32x4_add(s0, wasm_v128_load(x + i));
    s1 = wasm_f32x4_add(s1, wasm_v128_load(x + i + 4));
    s2 = wasm_f32x4_add(s2, wasm_v128_load(x + i + 8));
    s3 = wasm_f32x4_add(s3, wasm_v128_load(x + i + 12));
  }
  v128_t s = wasm_f32x4_add(wasm_f32x4_add(s0, s1), wasm_f32x4_add(s2, s3));
  return wasm_f32x4_extract_lane(s, 0) + wasm_f32x4_extract_lane(s, 1) + wasm_f32x4_extract_lane(s, 2) +
         wasm_f32x4_extract_lane(s, 3);
}
