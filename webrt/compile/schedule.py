"""GPU schedules: dlight's rules, tried in order. A rule declines when it returns nothing, when it
raises (e.g. GEMV on an extent-1 reduction), or when its schedule does not build: some rules emit
schedules the TIR pipeline later rejects, so each candidate is built before it is accepted."""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.s_tir import Schedule
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import try_inline

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


# The stages of a quantized matmul that decode each sub-block's scale and offset
# (webrt/models/quantized.py _decode_stages)
DECODE_PREFIX = "qdecode_"


def split_decode_stages(sch: Schedule, infos) -> tuple[list, list]:
    """(decode stages, the other blocks with everything inlined that can be): the decode stages
    stay blocks of their own, for place_decode_stages."""
    stages = [i for i in infos if i.name.startswith(DECODE_PREFIX)]
    return stages, try_inline(sch, [i for i in infos if not i.name.startswith(DECODE_PREFIX)])


def place_decode_stages(sch: Schedule, stages, step_loop) -> None:
    """Each decode stage computed under the reduction's 32-column step loop, into registers: once
    per sub-block and output, where inlined it ran for every weight (an f16 scale and min, or a
    K-quant's 6-bit packed pair, decoded 32 times over)."""
    for stage in stages:
        sch.compute_at(stage.block_rv, step_loop)
        sch.set_scope(stage.block_rv, 0, "local")
        loops = sch.get_loops(stage.block_rv)
        depth = next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(sch.get(step_loop)))
        for loop in loops[depth + 1:]:
            sch.unroll(loop)


class DecodeOnce(dl.gpu.Fallback):
    """dlight's Fallback (one thread per output, no barriers) for a matmul with decode stages,
    which it would inline: here they run once per 32-column step of the reduction
    (place_decode_stages). Declines functions without decode stages."""

    def apply(self, func: tirx.PrimFunc, target: tvm.target.Target, _tune: bool):
        sch = Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        stages, rest = split_decode_stages(sch, infos)
        if not stages:
            return None
        step_loops = []
        # as Fallback: each remaining block (the matmul, and an epilogue a reduction cannot take in:
        # a residual add, SiLU) gets its own grid of one thread per output
        for info in rest:
            loops = sch.get_loops(info.block_rv)
            kinds = info.dom_kind()
            if len(kinds) != len(loops) or "O" in kinds:
                return None
            s_loops = [l for l, k in zip(loops, kinds) if k == "S"] or [sch.add_unit_loop(info.block_rv)]
            r_loops = [l for l, k in zip(loops, kinds) if k == "R"]
            sch.reorder(*s_loops, *r_loops)
            bx, tx = sch.split(sch.fuse(*s_loops), [None, dl.base.max_threads_per_block(target)])
            sch.bind(bx, "blockIdx.x")
            sch.bind(tx, "threadIdx.x")
            if r_loops:
                step_loops.append((info.block_rv, r_loops[0]))
        if len(step_loops) != 1:
            return None
        main, step = step_loops[0]
        place_decode_stages(sch, stages, step)
        sch.decompose_reduction(main, step)
        return sch


# Schedule sets, chosen at compile time (`webrt compile --schedule`):
#   portable  one thread per output element, no shared memory and no barriers (dlight's Fallback
#             rule; DecodeOnce first for quantized matmuls, bench/webgpu_qdecode.md). Measured
#             on SwiftShader (SmolLM2-135M, f32): decode 1.2 s/token against 5.3 s for the dlight
#             set, prefill(8) 6.0 s against 15.6 s; barriers are what software and many
#             integrated GPUs pay most for.
#   dlight    dlight's shared-memory matmul and cross-thread GEMV/reduction rules, for discrete GPUs.
SCHEDULES = ("portable", "dlight")


def gpu_rules(schedule: str = "portable") -> list[dl.ScheduleRule]:
    if schedule == "portable":
        return [DecodeOnce(), dl.gpu.Fallback()]
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
