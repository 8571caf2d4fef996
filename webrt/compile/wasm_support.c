// webrt's wasm kernel runtime: what TVM-generated kernels import, and the allocator the JS side uses.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(#name)))

static char last_error[512];

// Kernels report a failed check (shape, dtype, alignment) here; JS reads it with webrt_last_error().
void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t n) {
  size_t at = 0;
  last_error[0] = 0;
  for (const char* p = kind; p && *p && at < sizeof(last_error) - 1; p++) last_error[at++] = *p;
  if (at < sizeof(last_error) - 2) { last_error[at++] = ':'; last_error[at++] = ' '; }
  for (int32_t i = 0; i < n; i++)
    for (const char* p = parts[i]; p && *p && at < sizeof(last_error) - 1; p++) last_error[at++] = *p;
  last_error[at] = 0;
}

// The system-library registration runs at startup; the JS side calls kernels by export name instead.
int TVMFFIEnvModRegisterSystemLibSymbol(const char* name, void* ptr) { (void)name; (void)ptr; return 0; }

void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code, int dtype_bits) {
  (void)device_type; (void)device_id; (void)dtype_code; (void)dtype_bits;
  return aligned_alloc(64, (nbytes + 63) & ~(uint64_t)63);
}

int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr) {
  (void)device_type; (void)device_id;
  free(ptr);
  return 0;
}

EXPORT(webrt_alloc) void* webrt_alloc(uint32_t nbytes) { return aligned_alloc(64, (nbytes + 63) & ~63u); }
EXPORT(webrt_free) void webrt_free(void* ptr) { free(ptr); }
EXPORT(webrt_last_error) const char* webrt_last_error(void) { return last_error; }
