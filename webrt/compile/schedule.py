"""GPU schedules: dlight's rules, tried in order. A rule declines when it returns nothing, when it
raises (e.g. GEMV on an extent-1 reduction), or when its schedule does not build: some rules emit
schedules the TIR pipeline later rejects, so each candidate is built before it is accepted."""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.s_tir import dlight as dl

from ..errors import WebrtError
from .kernels import lower_tir


# Larger shaders are refused: dlight's unrolled matmul on attention scores with a symbolic size
# produced a 488 KB kernel that crashes SwiftShader's pipeline creation.
MAX_WGSL_CHARS = 100_000


class Matmul(dl.gpu.Matmul):
    """dlight's Matmul without unrolling: about 10x less WGSL (40 KB -> 4 KB per kernel), so
    pipelines are created in a fraction of the time."""

    def get_configs(self, target):
        return dl.gpu.Matmul.Config(unroll=0)


# Schedule sets, chosen at compile time (`webrt compile --schedule`):
#   portable  one thread per output element, no shared memory and no barriers (dlight's Fallback
#             rule). Measured on SwiftShader (SmolLM2-135M, f32): decode 1.2 s/token against 5.3 s
#             for the dlight set, prefill(8) 6.0 s against 15.6 s; barriers are what software and
#             many integrated GPUs pay most for.
#   dlight    dlight's shared-memory matmul and cross-thread GEMV/reduction rules, for discrete GPUs.
SCHEDULES = ("portable", "dlight")


def gpu_rules(schedule: str = "portable") -> list[dl.ScheduleRule]:
    if schedule == "portable":
        return [dl.gpu.Fallback()]
    return [Matmul(), dl.gpu.GEMV(), dl.gpu.LowBatchGEMV(), dl.gpu.Reduction(),
            dl.gpu.GeneralReduction(), dl.gpu.Fallback()]


def _builds(func: tirx.PrimFunc, target: tvm.target.Target) -> bool:
    try:
        # a global symbol makes the function public, as AttachGlobalSymbol will later
        _, sources = lower_tir(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
    except Exception:  # noqa: BLE001 - any failure means this schedule is unusable
        return False
    return all(len(wgsl) <= MAX_WGSL_CHARS for wgsl in sources.values())


def schedule_function(func: tirx.PrimFunc, target: tvm.target.Target, rules) -> tirx.PrimFunc | None:
    for rule in rules:
        try:
            space = rule.apply(func, target, False)
        except Exception:  # noqa: BLE001 - dlight signals "cannot schedule" by raising
            continue
        if space is None:
            continue
        sch = space[0] if isinstance(space, list) else space
        scheduled = sch.mod["main"].with_attr("tirx.is_scheduled", True)
        if _builds(scheduled, target):
            return scheduled
    return None


def apply_gpu_schedules(schedule: str = "portable") -> tvm.transform.Pass:
    rules = gpu_rules(schedule)

    @tvm.transform.module_pass(opt_level=0, name="webrt.ScheduleGPU")
    def schedule_all(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        target = tvm.target.Target.current(allow_none=False)
        updated = {}
        for gv, func in mod.functions_items():
            if isinstance(func, tirx.PrimFunc) and not func.attrs.get("tirx.is_scheduled", False):
                scheduled = schedule_function(func, target, rules)
                if scheduled is None:
                    raise WebrtError(f"internal: no GPU schedule builds for kernel {gv.name_hint}")
                updated[gv] = scheduled
        for gv, func in updated.items():
            mod[gv] = func
        return mod

    return schedule_all
