"""Schedule candidates for the browser tuner (web/tuner.js): a small space per hot function.

The default schedule (schedule.py) is fixed at compile time, but the best one depends on the
visitor's device: on SwiftShader barriers are what costs most, on a discrete GPU the shared-memory
tiling wins. So each matmul-like function (a reduction whose innermost loop walks contiguous memory:
x @ W^T, the q4/q8 matmul with fused dequantization, attention scores; the same test the wasm
schedule uses) also gets a few alternative schedules, each compiled to its own WGSL kernels and
launch recipe with the same parameters as the default. The browser times them on the real buffers
and remembers the winner per device (docs/ARTIFACT.md, "Tuning").

The space here is barrier-free register blocking: each thread keeps `rows` outputs in registers
(cache_write "local") and reads each x element once for all of them; `threads` per workgroup; the
innermost reduction loop optionally unrolled by 4; a quantized matmul's decode stages (each
sub-block's scale and offset) run once per 32-column step for the thread's rows. Candidates that
fail to build or exceed the size limit are dropped and never shipped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import tirx
from tvm.s_tir import Schedule
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.tirx.analysis import undefined_vars

from .cpu_schedule import _walks_contiguously, schedule_cpu
from .int_dot import DEFAULT_INT_DOT, use_int_dot
from .kernels import Kernel, extract_kernels
from .schedule import DECODE_PREFIX, place_decode_stages, split_decode_stages

# A candidate kernel above this size is not worth a pipeline: dlight's unrolled kernels of this
# size took seconds to create on SwiftShader (schedule.py keeps a looser limit for defaults).
MAX_CANDIDATE_WGSL_CHARS = 40_000

# (rows per thread, threads per workgroup, unroll the innermost reduction by 4, hoist): 12 points chosen to
# span the register-pressure / occupancy trade-off without a full grid (compile time and tuning
# time both grow with the count). Likeliest winners first (measured on SwiftShader): the tuner
# tries a prefix of the list when a function's budget share is short. `hoist` moves the reduction
# loops the weight reads do not depend on (the q4 code index j: 8 codes share one u32 word, one
# scale and one min) innermost and unrolls them, so each weight word is loaded once, not 8 times.
GPU_SPACE = (
    (4, 64, False, True), (8, 64, False, True), (8, 32, False, True), (2, 64, False, True),
    (4, 64, False, False), (8, 64, False, False), (4, 64, True, False), (8, 32, True, False),
    (4, 32, False, False), (2, 64, False, False), (1, 64, False, False), (4, 128, False, False),
)


@dataclass
class Candidate:
    id: str                      # "c<k>", unique within its function
    knobs: dict
    recipe: dict                 # {params, vars, scratch, launches} as manifest functions
    kernels: dict[str, Kernel]

    def to_json(self) -> dict:
        return {"id": self.id, "knobs": self.knobs, "scratch": self.recipe["scratch"],
                "launches": self.recipe["launches"]}


def _spatial_reduce_loops(sch: Schedule, info):
    loops = sch.get_loops(info.block_rv)
    kinds = info.dom_kind()
    if len(loops) != len(kinds) or "O" in kinds:
        return None
    return [l for l, k in zip(loops, kinds) if k == "S"], [l for l, k in zip(loops, kinds) if k == "R"]


def _hoisted(main, block) -> list[int]:
    """Positions (among the reduction loops) of those no weight read depends on; weights are the
    buffers read with the blocked output row."""
    reduce = [it for it in main.iters if it.kind == "R"]
    weights = _weight_reads(main, block)
    return [i for i, it in enumerate(reduce) if not any(_region_uses(r, it.var) for r in weights)]


def _region_uses(region, var) -> bool:
    return any(v.same_as(var) for rng in region.region for v in undefined_vars(rng.min))


def _weight_reads(main, block) -> list:
    row = [it for it in main.iters if it.kind == "S"][-1].var
    return [r for r in block.reads if _region_uses(r, row)]


def register_blocked(func: tirx.PrimFunc, rows: int, threads: int, unroll: bool,
                     hoist: bool = False) -> tirx.PrimFunc | None:
    """The barrier-free register-blocked schedule of a matmul-like function, or None when the
    function is not one (one reduction, contiguous innermost reduction loop, injective epilogues)."""
    sch = Schedule(tvm.IRModule({"main": func}))
    infos = normalize_prim_func(sch)
    if infos is None:
        return None
    stages, infos = split_decode_stages(sch, infos)
    reductions = [i for i in infos if i.is_reduction()]
    if len(reductions) != 1:
        return None
    main = reductions[0]
    block = sch.get(main.block_rv)
    reduce_vars = [iv for iv in block.iter_vars if iv.iter_type == tirx.IterVar.CommReduce]
    if not reduce_vars or not _walks_contiguously(block, reduce_vars[-1].var):
        return None
    found = _spatial_reduce_loops(sch, main)
    if found is None:
        return None
    s_loops, r_loops = found
    if not s_loops:
        return None
    later = [i for i in infos if i is not main]
    sch.reorder(*s_loops, *r_loops)
    moved = []
    if hoist:
        free = _hoisted(main, block)
        if not free or len(free) == len(r_loops) or unroll:
            return None  # nothing to hoist: the plain schedule covers it
        moved = [r_loops[i] for i in free]
        r_loops = [l for i, l in enumerate(r_loops) if i not in free]
    # the last spatial loop walks the outputs sharing one x row (weight rows, cache positions):
    # those are blocked into registers; the others (batch, sequence, heads) go to blockIdx.y
    outer = sch.fuse(*s_loops[:-1]) if len(s_loops) > 1 else sch.add_unit_loop(main.block_rv)
    bx, tx, rr = sch.split(s_loops[-1], [None, threads, rows])
    inner_r = r_loops[-1]
    extent = sch.get(inner_r).extent
    unroll_loop = None
    if unroll:
        if not (isinstance(extent, tirx.IntImm) and extent.value % 4 == 0 and extent.value > 4):
            return None
        inner_r, unroll_loop = sch.split(inner_r, [None, 4])
        r_loops = [*r_loops[:-1], inner_r]
    sch.reorder(outer, bx, tx, *r_loops, *([unroll_loop] if unroll_loop else []), *moved, rr)
    for loop in moved:
        sch.unroll(loop)
    if moved:
        # each thread's weight words, scales and mins in registers once per step of the kept loops:
        # SwiftShader's shader compiler does not merge the repeated loads itself
        for name in [r.source.name for r in _weight_reads(main, block) if not r.source.name.startswith(DECODE_PREFIX)]:
            index = next(i for i, r in enumerate(sch.get(main.block_rv).reads) if r.source.name == name)
            sch.compute_at(sch.cache_read(main.block_rv, index, "local"), r_loops[-1])
    # the sub-blocks' scales and offsets of the thread's rows, once per 32-column step
    place_decode_stages(sch, stages, r_loops[0])
    sch.bind(outer, "blockIdx.y")
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    sch.unroll(rr)
    if unroll_loop is not None:
        sch.unroll(unroll_loop)
    # the accumulators live in registers; the write-back (and any epilogue inlined into it: the
    # residual add, SiLU * up) runs once per output after the reduction
    write_back = sch.cache_write(main.block_rv, 0, "local")
    sch.reverse_compute_at(write_back, tx)
    for info in later:
        try:
            sch.reverse_compute_inline(info.block_rv)
        except Exception:  # noqa: BLE001 - TVM raises ScheduleError or InternalError here
            return None  # another kernel's worth of work: not this rule's shape
    sch.decompose_reduction(main.block_rv, r_loops[0])
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def gpu_candidates(name: str, func: tirx.PrimFunc, default: dict, target: tvm.target.Target) -> list[Candidate]:
    """The candidates of function `name` that build, fit, and take the default's parameters."""
    out = []
    for knobs in GPU_SPACE:
        rows, threads, unroll, hoist = knobs
        try:
            scheduled = register_blocked(func, rows, threads, unroll, hoist)
        except Exception:  # noqa: BLE001 - a schedule primitive refused: this point does not apply
            scheduled = None
        if scheduled is None:
            continue
        cid = f"c{len(out) + 1}"
        symbol = f"{name}__{cid}"
        try:
            kernel_set = extract_kernels(tvm.IRModule({symbol: scheduled.with_attr("global_symbol", symbol)}), target)
        except Exception:  # noqa: BLE001 - a schedule the TIR pipeline rejects is dropped
            continue
        recipe = kernel_set.functions[symbol]
        if any(len(k.wgsl) > MAX_CANDIDATE_WGSL_CHARS for k in kernel_set.kernels.values()):
            continue
        if recipe["params"] != default["params"]:
            continue  # the plan's call steps must run it unchanged
        out.append(Candidate(cid, {"rows": rows, "threads": threads, "unroll": unroll, "hoist": hoist}, recipe,
                             kernel_set.kernels))
    return out


# wasm: rows of the register block and f32 lanes of partial sums (8 and 16: two or four v128
# accumulators per row, more independent multiply-adds in flight). The default depends on the shape
# (cpu_schedule._default_knobs); a variant equal to it is dropped.
WASM_SPACE = ((1, 4), (1, 8), (1, 16), (2, 8), (4, 4), (8, 4), (4, 8))
# x @ W^T over many tokens: (token rows, weight rows) of the token-blocked register block
# (cpu_schedule._schedule_token_blocked_matmul; the default is 2 x 4)
WASM_TOKEN_SPACE = ((4, 2), (4, 3))
# the one-token matmuls whose int-dot or exact kernel is a candidate: 4-bit and Q8_0 codes
INT_DOT_CANDIDATE = "decode"


def wasm_candidates(name: str, func: tirx.PrimFunc, int_dot: str = DEFAULT_INT_DOT) -> list[dict]:
    """[{id, knobs}] of the CPU schedule variants of `name` that differ from its default schedule
    (and from each other): exported by the SIMD wasm builds as `<name>__<id>`. A one-token matmul
    the int-dot kernel can run also gets the kernel its default does not use ({"int_dot": True}:
    the int-dot kernel; False: the exact f32 one, default schedule): which of the two is faster
    depends on the CPU (int_dot.py), and the two agree to the activations' 16-bit rounding, well
    inside the tuner's tolerance. Its f32 schedule variants stay f32."""
    seen = [schedule_cpu(func)]
    if seen[0].same_as(func):
        return []  # no rule applies: nothing to vary
    out = []
    spaces = [{"rows": rows, "lanes": lanes} for rows, lanes in WASM_SPACE]
    spaces += [{"tokens": tokens, "rows": rows} for tokens, rows in WASM_TOKEN_SPACE]
    for knobs in spaces:
        variant = schedule_cpu(func, **knobs)
        if any(tvm_ffi.structural_equal(variant, s) for s in seen):
            continue
        seen.append(variant)
        out.append({"id": f"w{len(out) + 1}", "knobs": knobs})
    if use_int_dot(func, INT_DOT_CANDIDATE) is not None:
        out.append({"id": f"w{len(out) + 1}", "knobs": {"int_dot": use_int_dot(func, int_dot) is None}})
    return out


def wasm_candidate_func(func: tirx.PrimFunc, knobs: dict, threads: int) -> tirx.PrimFunc:
    """The scheduled PrimFunc of a wasm candidate (wasm_candidates' knobs) of unscheduled `func`."""
    knobs = dict(knobs)
    if knobs.pop("int_dot", False):
        func = use_int_dot(func, INT_DOT_CANDIDATE)
    return schedule_cpu(func, threads=threads, **knobs)


def space_hash(functions: dict, kernels: dict) -> str:
    """What a tuning result is valid for: the functions' launch recipes (defaults and candidates)
    and the kernels' code. Baking a tuning DB into the artifact does not change it."""
    text = json.dumps({"functions": functions, "kernels": {k: v["sha256"] for k, v in kernels.items()}},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()

