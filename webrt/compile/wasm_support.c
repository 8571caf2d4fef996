// webrt's wasm kernel runtime: what TVM-generated kernels import, the allocator the JS side uses,
// and (in the threads build) the parallel launch over a pool of Web Workers sharing this memory.
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

// Workspace (a fused function's intermediates) is taken on the calling thread, outside parallel
// loops: the CPU schedules keep per-task partial sums in locals, so workers never allocate.
static int32_t in_parallel_job;  // malloc is not thread-safe: no allocation while workers run

void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code, int dtype_bits) {
  (void)device_type; (void)device_id; (void)dtype_code; (void)dtype_bits;
  if (__atomic_load_n(&in_parallel_job, __ATOMIC_SEQ_CST)) __builtin_trap();
  return aligned_alloc(64, (nbytes + 63) & ~(uint64_t)63);
}

int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr) {
  (void)device_type; (void)device_id;
  if (__atomic_load_n(&in_parallel_job, __ATOMIC_SEQ_CST)) __builtin_trap();
  free(ptr);
  return 0;
}

EXPORT(webrt_alloc) void* webrt_alloc(uint32_t nbytes) { return aligned_alloc(64, (nbytes + 63) & ~63u); }
EXPORT(webrt_free) void webrt_free(void* ptr) { free(ptr); }
EXPORT(webrt_last_error) const char* webrt_last_error(void) { return last_error; }

// ---- parallel launch ------------------------------------------------------------------------
// TVM emits TVMBackendParallelLaunch(lambda, data, 0) for a parallel loop; the lambda runs task
// `task_id` of `num_task` (a static chunk of the loop). The calling thread publishes the job and
// bumps `generation`; pool workers (Web Workers in webrt_worker_loop) wake on it, and every
// participant, the caller included, takes task ids from `next_task` until none are left. The caller
// then spins until each worker has checked out: it may be a page's main thread, where wasm may not
// block on a wait.

typedef struct { void* sync_handle; int32_t num_task; } TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv* penv, void* cdata);

static int32_t pool_threads = 1;  // participants, caller included
static FTVMParallelLambda job_lambda;
static void* job_data;
static TVMParallelGroupEnv job_env;
static int32_t generation;        // atomics: a new job when it changes
static int32_t next_task;
static int32_t workers_busy;
static int32_t job_failed;

static void run_tasks(void) {
  for (;;) {
    int32_t task = __atomic_fetch_add(&next_task, 1, __ATOMIC_SEQ_CST);
    if (task >= job_env.num_task) return;
    if (job_lambda(task, &job_env, job_data) != 0) __atomic_store_n(&job_failed, 1, __ATOMIC_SEQ_CST);
  }
}

int TVMBackendParallelLaunch(FTVMParallelLambda lambda, void* cdata, int num_task) {
  int32_t threads = pool_threads;
  if (num_task <= 0) num_task = threads;
  TVMParallelGroupEnv env = {0, num_task};
  if (threads == 1 || num_task == 1) {
    for (int task = 0; task < num_task; task++)
      if (lambda(task, &env, cdata) != 0) return -1;
    return 0;
  }
  job_lambda = lambda;
  job_data = cdata;
  job_env = env;
  __atomic_store_n(&job_failed, 0, __ATOMIC_SEQ_CST);
  __atomic_store_n(&next_task, 0, __ATOMIC_SEQ_CST);
  __atomic_store_n(&workers_busy, threads - 1, __ATOMIC_SEQ_CST);
  __atomic_store_n(&in_parallel_job, 1, __ATOMIC_SEQ_CST);
  __atomic_fetch_add(&generation, 1, __ATOMIC_SEQ_CST);
#ifdef __wasm_atomics__
  __builtin_wasm_memory_atomic_notify(&generation, (uint32_t)(threads - 1));
#endif
  run_tasks();
  while (__atomic_load_n(&workers_busy, __ATOMIC_SEQ_CST) != 0) {
  }
  __atomic_store_n(&in_parallel_job, 0, __ATOMIC_SEQ_CST);
  return __atomic_load_n(&job_failed, __ATOMIC_SEQ_CST) ? -1 : 0;
}

int TVMBackendParallelBarrier(int task_id, TVMParallelGroupEnv* penv) {
  (void)task_id; (void)penv;
  return -1;  // no schedule of ours uses barriers inside a parallel loop
}

#ifdef __wasm_atomics__
// A pool worker's whole life: wait for a job, take tasks, check out, repeat. `seen` is the
// generation the worker was started at (0: no job can start before the pool is sized).
EXPORT(webrt_worker_loop) void webrt_worker_loop(int32_t seen) {
  for (;;) {
    while (__atomic_load_n(&generation, __ATOMIC_SEQ_CST) == seen)
      __builtin_wasm_memory_atomic_wait32(&generation, seen, -1);
    seen = __atomic_load_n(&generation, __ATOMIC_SEQ_CST);
    run_tasks();
    __atomic_fetch_sub(&workers_busy, 1, __ATOMIC_SEQ_CST);
  }
}
#endif

// Called once every worker runs webrt_worker_loop; until then parallel loops run on the caller.
EXPORT(webrt_set_threads) void webrt_set_threads(int32_t threads) { pool_threads = threads < 1 ? 1 : threads; }
