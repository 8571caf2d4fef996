"""WebAssembly kernels: the same fused TIR functions the WebGPU plan calls, compiled by TVM's LLVM
backend for wasm32 (SIMD128) and linked without emscripten, with zig's clang and wasm-ld (the
`ziglang` package) and a small C support file (wasm_support.c: workspace allocation, error text,
the allocator the JS side uses). The result exports `__tvm_ffi_<function>` for every function."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import tvm
from tvm import relax, tirx

from ..errors import WebrtError
from .cpu_schedule import schedule_cpu

SUPPORT_C = Path(__file__).with_name("wasm_support.c")


def wasm_target() -> tvm.target.Target:
    return tvm.target.Target({"kind": "llvm", "mtriple": "wasm32-unknown-unknown-wasm", "mattr": ["+simd128"]})


def _zig(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "ziglang", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise WebrtError(f"internal: linking the wasm kernels failed: {result.stderr.strip()[:500]}")


def build_wasm(unscheduled: tvm.IRModule, functions: list[str]) -> bytes:
    """Compile `functions` (fused, unscheduled PrimFuncs) into one linked .wasm."""
    target = wasm_target()
    prim_funcs = {gv: schedule_cpu(f) for gv, f in unscheduled.functions.items()
                  if isinstance(f, tirx.PrimFunc) and gv.name_hint in functions}
    mod = relax.transform.AttachGlobalSymbol()(tvm.IRModule(prim_funcs))
    # with a system-lib prefix, calls into the runtime become plain imports the support file defines
    mod = mod.with_attr("system_lib_prefix", "")
    with tempfile.TemporaryDirectory(prefix="webrt-wasm-") as work:
        work = Path(work)
        tvm.tirx.build(mod, target=target).write_to_file(str(work / "kernels.o"))
        exports = [f"-Wl,--export=__tvm_ffi_{name}" for name in functions]
        _zig("cc", "-target", "wasm32-wasi", "-O2", "-msimd128", "-mexec-model=reactor", "-s",
             str(SUPPORT_C), "kernels.o", "-o", "kernels.wasm", *exports, cwd=work)
        return (work / "kernels.wasm").read_bytes()
