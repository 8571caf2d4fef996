"""The compile stage: Relax module -> scheduled kernels (WGSL) + execution plan.

compile_module() runs named steps a reader can print, reorder or time: the Relax pipeline, kernel
extraction through the TIR pipeline, and plan extraction per entry function.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import relax

from .kernels import Kernel, extract_kernels
from .plan import entry_plan
from .relax_pipeline import run_relax_pipeline


def webgpu_target() -> tvm.target.Target:
    return tvm.target.Target({"kind": "webgpu"}, host={"kind": "llvm", "mtriple": "wasm32-unknown-unknown-wasm"})


@dataclass
class CompiledModule:
    kernels: dict[str, Kernel]
    functions: dict[str, dict]
    entries: dict[str, dict]


def compile_module(mod: tvm.IRModule, entry_params: dict[str, list[str]], schedule: str = "portable") -> CompiledModule:
    """entry_params maps each entry function to the external names of its parameters, in order;
    schedule names the schedule set (see schedule.SCHEDULES)."""
    target = webgpu_target()
    lowered = run_relax_pipeline(mod, target, schedule)
    kernel_set = extract_kernels(lowered, target)
    entries = {name: entry_plan(lowered[name], params) for name, params in entry_params.items()}
    used = {step["func"] for plan in entries.values() for step in plan["steps"] if step["op"] == "call"}
    functions = {name: recipe for name, recipe in kernel_set.functions.items() if name in used}
    return CompiledModule(kernel_set.kernels, functions, entries)


__all__ = ["CompiledModule", "compile_module", "webgpu_target"]
