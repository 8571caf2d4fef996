"""WebAssembly kernels: the same fused TIR functions the WebGPU plan calls, with CPU schedules
(cpu_schedule.py), compiled by TVM's LLVM backend for wasm32 and linked without emscripten, with
zig's clang and wasm-ld (the `ziglang` package) and a small C support file (wasm_support.c:
workspace allocation, error text, the allocator the JS side uses, the parallel launch).

Up to five builds, all exporting `__tvm_ffi_<function>` for every function:
  simd             SIMD128, one thread: the default.
  threads          SIMD128 + atomics over a shared, imported memory: parallel loops run on a pool of
                   Web Workers (web/wasm_threads.js), for pages that are crossOriginIsolated.
  scalar           no SIMD, for the few browsers without it.
  relaxed          simd with relaxed SIMD: LLVM turns the vector multiply-adds TVM emits
  relaxed_threads  (llvm.fmuladd) into f32x4.relaxed_madd, which V8 runs as one FMA instruction on
                   x86 with FMA. The browser takes them in place of simd / threads where
                   WebAssembly.validate accepts relaxed SIMD (web/wasm_backend.js). Results differ
                   from their base build's only by the rounding of fused multiply-adds.

The schedules depend only on threads and SIMD (cpu_schedule.py), so each is made once and linked
for every build that shares it; a relaxed build whose bytes equal its base build's (no vector
multiply-add to fuse) is not written.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tvm
from tvm import relax, tirx

from ..errors import WebrtError
from .cpu_schedule import schedule_cpu
from .int_dot import DEFAULT_INT_DOT, INT_DOT_C, use_int_dot
from .tuning import wasm_candidate_func

SUPPORT_C = Path(__file__).with_name("wasm_support.c")
MAX_MEMORY = 65535 * 65536     # wasm32 allows 65536 pages; zig's linker flag parses a u32
STACK_BYTES = 1024 * 1024        # the calling thread's stack; pool workers get their own


@dataclass(frozen=True)
class WasmBuild:
    name: str
    mattr: tuple[str, ...]      # LLVM features for TVM's code
    cflags: tuple[str, ...]     # the same for the support file
    threads: bool
    base: str | None = None     # the build this one replaces where the browser has its extra features

    @property
    def simd(self) -> bool:
        return "+simd128" in self.mattr

    @property
    def libc_flags(self) -> list[str]:
        """Features the C library is built with: zig builds (and caches) one per feature set, so the
        simd and scalar builds share a plain one; shared memory needs atomics in every object."""
        return ["-matomics", "-mbulk-memory"] if self.threads else []

    @property
    def features(self) -> list[str]:
        return [f.lstrip("+") for f in self.mattr]


BUILDS = (
    WasmBuild("simd", ("+simd128",), ("-msimd128",), False),
    WasmBuild("threads", ("+simd128", "+atomics", "+bulk-memory"), ("-msimd128", "-matomics", "-mbulk-memory"), True),
    WasmBuild("scalar", (), (), False),
    WasmBuild("relaxed", ("+simd128", "+relaxed-simd"), ("-msimd128", "-mrelaxed-simd"), False, base="simd"),
    WasmBuild("relaxed_threads", ("+simd128", "+relaxed-simd", "+atomics", "+bulk-memory"),
              ("-msimd128", "-mrelaxed-simd", "-matomics", "-mbulk-memory"), True, base="threads"),
)


def _zig(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "ziglang", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise WebrtError(f"internal: linking the wasm kernels failed: {result.stderr.strip()[:500]}")


def build_wasm_set(unscheduled: tvm.IRModule, functions: list[str], candidates: dict[str, list[dict]] | None = None,
                   int_dot: str = DEFAULT_INT_DOT) -> dict[str, tuple[WasmBuild, bytes]]:
    """Every build of BUILDS (name -> (build, .wasm bytes)) but the relaxed builds that came out
    identical to their base; arguments as build_wasm's."""
    scheduled = {}
    out = {}
    for build in BUILDS:
        key = (build.threads, build.simd)
        if key not in scheduled:
            scheduled[key] = _schedule(unscheduled, functions, build, candidates, int_dot)
        code = _link(*scheduled[key], build)
        if build.base is None or code != out[build.base][1]:
            out[build.name] = (build, code)
    return out


def build_wasm(unscheduled: tvm.IRModule, functions: list[str], build: WasmBuild = BUILDS[0],
               candidates: dict[str, list[dict]] | None = None, int_dot: str = DEFAULT_INT_DOT) -> bytes:
    """Compile `functions` (fused, unscheduled PrimFuncs) into one linked .wasm. candidates: function
    -> [{id, knobs}] schedule variants (tuning.wasm_candidates), exported as `<function>__<id>`
    besides the default, for the browser tuner; SIMD builds only (the knobs are SIMD widths).
    int_dot: which quantized matmuls run the integer-dot kernel (int_dot.py's INT_DOT_MODES) instead
    of the exact f32 one; a function's candidates are f32 schedule variants and, for a one-token
    4-bit or Q8_0 matmul, the kernel its default does not use (tuning.wasm_candidates)."""
    return _link(*_schedule(unscheduled, functions, build, candidates, int_dot), build)


def _schedule(unscheduled: tvm.IRModule, functions: list[str], build: WasmBuild,
              candidates: dict[str, list[dict]] | None, int_dot: str) -> tuple[tvm.IRModule, list[str]]:
    """The scheduled module of `functions` (and candidates) for the build's threads and SIMD, with
    the names it exports."""
    chosen = {gv: use_int_dot(f, int_dot) or f for gv, f in unscheduled.functions.items()
              if isinstance(f, tirx.PrimFunc) and gv.name_hint in functions}
    prim_funcs = {gv: schedule_cpu(f, threads=build.threads) for gv, f in chosen.items()}
    exported = list(functions)
    if candidates and build.simd:
        for name, found in candidates.items():
            for c in found:
                symbol = f"{name}__{c['id']}"
                prim_funcs[tvm.ir.GlobalVar(symbol)] = wasm_candidate_func(unscheduled[name], c["knobs"], build.threads)
                exported.append(symbol)
    mod = relax.transform.AttachGlobalSymbol()(tvm.IRModule(prim_funcs))
    # with a system-lib prefix, calls into the runtime become plain imports the support file defines
    return mod.with_attr("system_lib_prefix", ""), exported


def _link(mod: tvm.IRModule, exported: list[str], build: WasmBuild) -> bytes:
    """LLVM code for the build's features, linked with the support file and the int-dot kernel."""
    target = tvm.target.Target({"kind": "llvm", "mtriple": "wasm32-unknown-unknown-wasm", "mattr": list(build.mattr)})
    link = [f"-Wl,--export=__tvm_ffi_{name}" for name in exported]
    link.append(f"-Wl,-z,stack-size={STACK_BYTES}")
    if build.threads:
        # one memory shared by the caller and the workers; each worker sets its own stack pointer
        link += ["-Wl,--shared-memory", "-Wl,--import-memory", "-Wl,--export-memory",
                 f"-Wl,--max-memory={MAX_MEMORY}", "-Wl,--export=__stack_pointer"]
    else:
        link.append(f"-Wl,--max-memory={MAX_MEMORY}")
    with tempfile.TemporaryDirectory(prefix="webrt-wasm-") as work:
        work = Path(work)
        tvm.tirx.build(mod, target=target).write_to_file(str(work / "kernels.o"))
        _zig("cc", "-target", "wasm32-wasi", "-O2", *build.cflags, "-c", str(SUPPORT_C), "-o", "support.o", cwd=work)
        _zig("cc", "-target", "wasm32-wasi", "-O2", *build.cflags, "-c", str(INT_DOT_C), "-o", "int_dot.o", cwd=work)
        _zig("cc", "-target", "wasm32-wasi", "-O2", *build.libc_flags, "-mexec-model=reactor", "-s",
             "support.o", "int_dot.o", "kernels.o", "-o", "kernels.wasm", *link, cwd=work)
        return (work / "kernels.wasm").read_bytes()
