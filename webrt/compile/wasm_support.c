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

// Workspace (a fused function's intermediates) is taken mostly on the calling thread, outside
// parallel loops; a quantized matmul over many tokens also takes a small tile of decoded weight
// rows inside each parallel task (cpu_schedule._decode_rows_ahead). libc's malloc is not
// thread-safe, so workspace calls take a lock (uncontended but for those tiles).
static int32_t workspace_lock;

static void lock_workspace(void) {
  while (__atomic_exchange_n(&workspace_lock, 1, __ATOMIC_ACQUIRE)) {
  }
}

static void unlock_workspace(void) { __atomic_store_n(&workspace_lock, 0, __ATOMIC_RELEASE); }

void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code, int dtype_bits) {
  (void)device_type; (void)device_id; (void)dtype_code; (void)dtype_bits;
  lock_workspace();
  void* ptr = aligned_alloc(64, (nbytes + 63) & ~(uint64_t)63);
  unlock_workspace();
  return ptr;
}

int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr) {
  (void)device_type; (void)device_id;
  lock_workspace();
  free(ptr);
  unlock_workspace();
  return 0;
}

EXPORT(webrt_alloc) void* webrt_alloc(uint32_t nbytes) { return aligned_alloc(64, (nbytes + 63) & ~63u); }
EXPORT(webrt_free) void webrt_free(void* ptr) { free(ptr); }
EXPORT(webrt_last_error) const char* webrt_last_error(void) { return last_error; }

// ---- parallel launch ------------------------------------------------------------------------
// TVM emits TVMBackendParallelLaunch(lambda, data, 0) for a parallel loop; the lambda runs task
// `task_id` of `num_task`, a static chunk of the loop. The calling thread publishes the job and
// wakes the pool (Web Workers inside webrt_worker_loop). Everyone, the caller included, claims task
// ids until none are left; the caller then waits only for tasks still running, never for a worker
// that is asleep or descheduled: on a busy machine that worker simply claims nothing.
//
// `job_state` packs the job's sequence number (high 16 bits) with the next unclaimed task (low 16).
// A worker reads it, then the job's fields, then claims by compare-and-swap: a successful swap
// proves the fields it read belong to the job it claimed from.

typedef struct { void* sync_handle; int32_t num_task; } TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv* penv, void* cdata);

#define TASKS_PER_THREAD 4  // smaller chunks, so a late or slow thread leaves less behind

static int32_t pool_threads = 1;  // participants, caller included
static FTVMParallelLambda job_lambda;
static void* job_data;
static int32_t job_tasks;
static uint32_t job_state;        // atomics from here on
static int32_t job_done;
static int32_t job_failed;
static int32_t generation;        // bumped per job; sleeping workers wait on it

// Claim and run tasks of the current job until none are left.
static void run_tasks(void) {
  for (;;) {
    uint32_t state = __atomic_load_n(&job_state, __ATOMIC_SEQ_CST);
    FTVMParallelLambda lambda = job_lambda;
    void* data = job_data;
    int32_t tasks = job_tasks;
    int32_t task = (int32_t)(state & 0xFFFF);
    if (task >= tasks) {
      if (__atomic_load_n(&job_state, __ATOMIC_SEQ_CST) == state) return;  // really done
      continue;  // a new job arrived while reading: look again
    }
    if (!__atomic_compare_exchange_n(&job_state, &state, state + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
      continue;
    TVMParallelGroupEnv env = {0, tasks};
    if (lambda(task, &env, data) != 0) __atomic_store_n(&job_failed, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&job_done, 1, __ATOMIC_SEQ_CST);
  }
}

int TVMBackendParallelLaunch(FTVMParallelLambda lambda, void* cdata, int num_task) {
  int32_t threads = pool_threads;
  if (num_task <= 0) num_task = threads == 1 ? 1 : threads * TASKS_PER_THREAD;
  if (threads == 1 || num_task == 1) {
    TVMParallelGroupEnv env = {0, num_task};
    for (int task = 0; task < num_task; task++)
      if (lambda(task, &env, cdata) != 0) return -1;
    return 0;
  }
  job_lambda = lambda;
  job_data = cdata;
  job_tasks = num_task;
  __atomic_store_n(&job_done, 0, __ATOMIC_SEQ_CST);
  __atomic_store_n(&job_failed, 0, __ATOMIC_SEQ_CST);
  uint32_t seq = (__atomic_load_n(&job_state, __ATOMIC_SEQ_CST) >> 16) + 1;
  __atomic_store_n(&job_state, seq << 16, __ATOMIC_SEQ_CST);
  __atomic_fetch_add(&generation, 1, __ATOMIC_SEQ_CST);
#ifdef __wasm_atomics__
  __builtin_wasm_memory_atomic_notify(&generation, (uint32_t)(threads - 1));
#endif
  run_tasks();
  // the caller may be a page's main thread, where wasm may not block on a wait: spin
  while (__atomic_load_n(&job_done, __ATOMIC_SEQ_CST) != num_task) {
  }
  return __atomic_load_n(&job_failed, __ATOMIC_SEQ_CST) ? -1 : 0;
}

int TVMBackendParallelBarrier(int task_id, TVMParallelGroupEnv* penv) {
  (void)task_id; (void)penv;
  return -1;  // no schedule of ours uses barriers inside a parallel loop
}

#ifdef __wasm_atomics__
#define SPIN_BEFORE_WAIT 20000

// A pool worker's whole life: wait for a job, claim tasks, repeat. `seen` is the generation the
// worker was started at (0: no job can start before the pool is sized).
EXPORT(webrt_worker_loop) void webrt_worker_loop(int32_t seen) {
  for (;;) {
    // kernels come back to back during a forward pass: spin a little before sleeping, since
    // waking a sleeping worker costs tens of microseconds
    for (int spin = 0; spin < SPIN_BEFORE_WAIT && __atomic_load_n(&generation, __ATOMIC_SEQ_CST) == seen; spin++) {
    }
    while (__atomic_load_n(&generation, __ATOMIC_SEQ_CST) == seen)
      __builtin_wasm_memory_atomic_wait32(&generation, seen, -1);
    seen = __atomic_load_n(&generation, __ATOMIC_SEQ_CST);
    run_tasks();
  }
}
#endif

// Called once every worker runs webrt_worker_loop; until then parallel loops run on the caller.
EXPORT(webrt_set_threads) void webrt_set_threads(int32_t threads) { pool_threads = threads < 1 ? 1 : threads; }
