"""The compile stage: Relax module -> scheduled kernels (WGSL) + execution plan.

compile_module() runs named steps a reader can print, reorder or time: the Relax pipeline, kernel
extraction through the TIR pipeline, and plan extraction per entry function.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm

from .kernels import Kernel, extract_kernels
from .plan import entry_plan
from .relax_pipeline import fusion_passes, lowering_passes, run_passes
from .tuning import Candidate, gpu_candidates, wasm_candidates
from .int_dot import DEFAULT_INT_DOT
from .wasm import build_wasm_set


def webgpu_target() -> tvm.target.Target:
    return tvm.target.Target({"kind": "webgpu"}, host={"kind": "llvm", "mtriple": "wasm32-unknown-unknown-wasm"})


@dataclass
class CompiledModule:
    kernels: dict[str, Kernel]
    functions: dict[str, dict]
    entries: dict[str, dict]
    wasm: dict | None = None    # build name -> the same functions as WebAssembly (see wasm.py)
    candidates: dict[str, list[Candidate]] | None = None  # function -> WebGPU schedule candidates (tuning.py)


def compile_module(mod: tvm.IRModule, entry_params: dict[str, list[str]], schedule: str = "portable",
                   wasm: bool = True, candidates: bool = True, int_dot: str = DEFAULT_INT_DOT) -> CompiledModule:
    """entry_params maps each entry function to the external names of its parameters, in order;
    schedule names the WebGPU schedule set (see schedule.SCHEDULES); wasm adds the wasm build;
    candidates adds the schedule candidates the browser tuner times (tuning.py); int_dot names the
    wasm builds' quantized matmuls that run on 16-bit integer activations (int_dot.py's INT_DOT_MODES)."""
    target = webgpu_target()
    fused = run_passes(mod, target, fusion_passes())
    # the unscheduled TIR, kept before the GPU schedules rewrite the module's functions
    unscheduled = tvm.IRModule({gv: f for gv, f in fused.functions_items() if isinstance(f, tvm.tirx.PrimFunc)})
    lowered = run_passes(fused, target, lowering_passes(schedule))
    kernel_set = extract_kernels(lowered, target)
    entries = {name: entry_plan(lowered[name], params) for name, params in entry_params.items()}
    used = sorted({step["func"] for plan in entries.values() for step in plan["steps"] if step["op"] == "call"})
    functions = {name: recipe for name, recipe in kernel_set.functions.items() if name in used}
    space = wasm_space = None
    if candidates:
        space = {name: found for name in used
                 if (found := gpu_candidates(name, unscheduled[name], functions[name], target))}
        wasm_space = {name: found for name in used if wasm and (found := wasm_candidates(name, unscheduled[name], int_dot))}
        for name, found in wasm_space.items():
            functions[name] = {**functions[name], "wasm_candidates": found}
    builds = build_wasm_set(unscheduled, used, wasm_space, int_dot) if wasm else None
    return CompiledModule(kernel_set.kernels, functions, entries, builds, space)


__all__ = ["CompiledModule", "compile_module", "webgpu_target"]
