"""CPU schedules for the wasm kernels, written for WebAssembly SIMD128.

One rule does most of the work: a reduction whose innermost loop walks consecutive addresses of
every buffer it reads (x @ W^T over the hidden size, the q4 matmul's lane axis l, attention scores
over head_dim) gets

  * vector partial sums: the innermost LANES iterations become one SIMD register of partial sums
    (rfactor), summed across lanes once per output;
  * register blocking over output rows: ROWS outputs share each load of x, and their independent
    accumulators hide the latency of the multiply-adds;
  * a parallel outer loop over output blocks when the build has threads and the outputs are
    many and of a fixed count (the features of a weight matrix).

x @ W^T over many tokens (a prefill, a batch of sentences) gets a register block of token rows x
weight rows instead (_schedule_token_blocked_matmul), with the sequence padded to the block and the
epilogue (bias, residual, GELU) in one pass.

A reduction over a strided axis whose innermost output axis is contiguous (attention's
probabilities @ V over the cache) gets its reduction loops moved outside that axis, which becomes
SIMD lanes. Everything else (softmax, rope, cache writes, sampling) is left as generated.

dlight's cpu.GEMV is not used: on wasm it is slower than no schedule at all and takes minutes to
compile (see ../shared/NOTES.md).
"""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.tirx import IndexMap
from tvm.sym import detect_linear_equation
from tvm.tirx.analysis import undefined_vars
from tvm.s_tir import Schedule
from tvm.s_tir.dlight.analysis import get_root_block

from ..weight_types import GEMV_ROWS_ATTR

LANES = 4          # f32 lanes in a v128
ROWS = 4           # outputs computed together (register blocking)
TOKEN_BLOCK = 2    # token rows of the many-token matmul's register block (x ROWS weight rows)
GEMV_LANES = 8    # a GEMV's partial sums per row (two v128 accumulators)
MIN_PARALLEL_BLOCKS = 16  # fewer output blocks than this run on one thread
MIN_PARALLEL_OUTPUTS = 8   # the same for attention's (token, head) pairs, each a pass over the cache
STEP_COLUMNS = 32  # columns per scale of every quantized layout (a group, a GGUF sub-block step)
SUPER_STEPS = 8    # 32-column reduction steps per K-quant super-block (256 columns)


def _stride(expr, var) -> int | None:
    """How far `expr` moves when var grows by one, if it is linear in var with a constant step."""
    coefficients = detect_linear_equation(expr, [var])
    if len(coefficients) != 2 or not isinstance(coefficients[0], tirx.IntImm):
        return None
    return int(coefficients[0].value)


def _uses(expr, var) -> bool:
    return any(v.same_as(var) for v in undefined_vars(expr))


def _walks_contiguously(block, var, writes: bool = False) -> bool:
    """Every buffer the block reads (and with writes, writes) with `var` is accessed at consecutive
    addresses along it."""
    for region in (*block.reads, *block.writes) if writes else block.reads:
        starts = [r.min for r in region.region]
        if not any(_uses(s, var) for s in starts):
            continue
        if any(_uses(s, var) for s in starts[:-1]) or _stride(starts[-1], var) != 1:
            return False
    return True


def _reduction_block(sch: Schedule, block_rv):
    """(block, spatial iter vars, reduction iter vars) when block_rv is a reduction; else None."""
    block = sch.get(block_rv)
    spatial = [iv for iv in block.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
    reduce = [iv for iv in block.iter_vars if iv.iter_type == tirx.IterVar.CommReduce]
    if not reduce or len(spatial) + len(reduce) != len(block.iter_vars):
        return None
    return block, spatial, reduce


def _is_gemv(spatial) -> bool:
    """One output row per weight row: every spatial axis but the last (the weight rows) is 1."""
    return all(isinstance(iv.dom.extent, tirx.IntImm) and iv.dom.extent.value == 1 for iv in spatial[:-1])


def _default_knobs(block, spatial, reduce) -> tuple[int, int]:
    """(rows, lanes) of the shipped schedule. A GEMV (decode) streams each weight once, so memory
    order decides: one row at a time walks the weight matrix as a single sequential stream, which
    measured ~1.8x faster than four interleaved row streams on wasm (x86 prefetchers; the weights
    of a decode step are far larger than the caches), with two v128 accumulators for the latency
    of the adds (bench/wasm_gemv.md; from cache the four-row block wins, which is why the tuner
    times every layer's weights). The q4/q8 GEMV (a reduction over group, code and word) is bound
    by its dequantization arithmetic instead, and a matmul over many tokens reuses each weight row
    across them: both keep register blocking (ROWS x LANES), which shares each load of x and keeps
    several sums in flight. A quantized GEMV's block of rows is its weight type's gemv_rows where
    quantized_matmul annotates one (webrt/weight_types.py: 2 for Q5_0, Q8_0 and Q6_K, measured)."""
    extent = reduce[-1].dom.extent
    if (_is_gemv(spatial) and len(reduce) == 1 and isinstance(extent, tirx.IntImm)
            and extent.value % GEMV_LANES == 0):
        return 1, GEMV_LANES
    if _is_gemv(spatial) and GEMV_ROWS_ATTR in block.annotations:
        return int(block.annotations[GEMV_ROWS_ATTR]), LANES
    return ROWS, LANES


def _schedule_vector_reduction(sch: Schedule, block_rv, threads: bool, rows: int | None = None,
                               lanes: int | None = None) -> bool:
    found = _reduction_block(sch, block_rv)
    if found is None:
        return False
    block, spatial, reduce = found
    loops = sch.get_loops(block_rv)
    if len(loops) != len(block.iter_vars):
        return False
    inner = reduce[-1]
    extent = inner.dom.extent
    if rows is None or lanes is None:
        rows, lanes = _default_knobs(block, spatial, reduce)
    if not isinstance(extent, tirx.IntImm) or extent.value % lanes or not _walks_contiguously(block, inner.var):
        return False
    # the loops follow the iter vars (spatial first): split the innermost reduction into lanes
    _, lane = sch.split(loops[-1], [None, lanes])
    n_spatial = len(spatial)
    rf_block = sch.rfactor(lane, factor_axis=n_spatial)
    # rf_block keeps the loop nest (spatial..., reductions..., lane), with lane now a spatial axis of
    # the partial sums; the original block sums the lanes
    rf_loops = sch.get_loops(rf_block)
    spatial_loops, reduce_loops, lane_loop = rf_loops[:n_spatial], rf_loops[n_spatial:-1], rf_loops[-1]
    row_loop = spatial_loops[-1]
    row_extent = sch.get(row_loop).extent
    if isinstance(row_extent, tirx.IntImm) and row_extent.value % rows == 0 and row_extent.value >= rows:
        # blocks of ROWS weight rows outermost: one parallel launch per call whatever the
        # sequence length, and a block's weights stay in cache while every token row uses them
        anchor, row_inner = sch.split(row_loop, [None, rows])
        sch.reorder(anchor, *spatial_loops[:-1], *reduce_loops, row_inner, lane_loop)
        sch.unroll(row_inner)
        per_output = spatial_loops[-2] if n_spatial > 1 else anchor
    else:
        anchor = per_output = row_loop
    sch.vectorize(lane_loop)
    anchor_extent = sch.get(anchor).extent
    if threads and isinstance(anchor_extent, tirx.IntImm) and anchor_extent.value >= MIN_PARALLEL_BLOCKS:
        # static chunks of output blocks per thread (TVMBackendParallelLaunch splits the loop);
        # symbolic extents (rows of a norm, cache positions) stay serial: a launch costs more
        # than those loops
        sch.parallel(anchor)
    elif threads and anchor.same_as(row_loop) and n_spatial > 1:
        # attention scores: rows of cache positions, one per (token, head)
        _parallel_over_outputs(sch, spatial_loops[:-1])
    first_reduce = _decode_once_per_step(sch, rf_block, reduce_loops[0])
    _decode_rows_ahead(sch, rf_block, anchor)
    # the lane sums go right after each output block, so the partial sums stay in registers
    sch.reverse_compute_at(block_rv, per_output)
    # the partial sums shrink to ROWS x LANES under that loop; TVM keeps such a small "global"
    # buffer on the (per-thread) stack, where "local" would become a heap workspace, unsafe
    # inside a parallel loop
    sch.decompose_reduction(rf_block, first_reduce)
    return True


def _decode_once_per_step(sch: Schedule, rf_block, step_loop):
    """The GGUF types' sub-block scales and offsets (the "qdecode_*" stages of quantized_matmul)
    computed ahead of the codes they scale, for the register block's rows, into a few registers
    or stack slots, instead of once per weight (the 6-bit packed K-quant scales cost a dozen scalar
    operations and two branches each). Where the reduction's 32-column steps come in whole
    256-column super-blocks, the stages are computed per super-block with their loops unrolled:
    each sub-block's position in the packed bytes is then a constant, with no branch. Unrolling
    the code loop j too (constant bit positions) measured slower. Returns the outermost reduction
    loop (the step loop, or its super-block part)."""
    producers = [b for b in sch.get_producers(rf_block) if sch.get(b).name_hint.startswith("qdecode_")]
    if not producers:
        return step_loop
    extent = sch.get(step_loop).extent
    if isinstance(extent, tirx.IntImm) and extent.value % SUPER_STEPS == 0:
        step_loop, _ = sch.split(step_loop, [None, SUPER_STEPS])
    for producer in producers:
        sch.compute_at(producer, step_loop)
        loops = sch.get_loops(producer)
        depth = next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(sch.get(step_loop)))
        for loop in loops[depth + 1:]:
            sch.unroll(loop)
    return step_loop


def _parallel_over_outputs(sch: Schedule, outer_loops) -> None:
    """Run attention's outer output loops (fused) on the threads: each iteration is a pass over the
    whole cache, so a symbolic count (tokens x heads) is worth a launch even for one token."""
    outer = sch.fuse(*outer_loops) if len(outer_loops) > 1 else outer_loops[0]
    extent = sch.get(outer).extent
    if not isinstance(extent, tirx.IntImm) or extent.value >= MIN_PARALLEL_OUTPUTS:
        sch.parallel(outer)


def _schedule_spatial_vector(sch: Schedule, block_rv, threads: bool) -> bool:
    """A reduction whose reduced axis is strided but whose innermost output axis is contiguous, such
    as attention's probabilities @ V (the cache is [position, head, dim]): as generated, each output
    walks the cache across positions, a jump of heads x dim floats per step. With the reduction
    loops moved outside the output axis, each position's row of V is read once, in order, and the
    outputs it feeds are updated LANES at a time (they stay in L1)."""
    found = _reduction_block(sch, block_rv)
    if found is None:
        return False
    block, spatial, reduce = found
    loops = sch.get_loops(block_rv)
    if len(loops) != len(block.iter_vars) or len(spatial) < 2:
        return False
    inner = spatial[-1]
    if (not isinstance(inner.dom.extent, tirx.IntImm) or inner.dom.extent.value % LANES
            or not _walks_contiguously(block, inner.var, writes=True)
            or not any(_uses(w.region[-1].min, inner.var) for w in block.writes)):
        return False
    outer_loops, out_loop, reduce_loops = loops[:len(spatial) - 1], loops[len(spatial) - 1], loops[len(spatial):]
    sch.reorder(*reduce_loops, out_loop)
    _, lane = sch.split(out_loop, [None, LANES])
    sch.vectorize(lane)
    if threads:
        _parallel_over_outputs(sch, outer_loops)
    sch.decompose_reduction(block_rv, reduce_loops[0])
    return True


def _dense_matmul_axes(sch: Schedule, block_rv):
    """(token loops, output loop, reduction loop) when block_rv is x @ W^T over many tokens: one
    reduction axis, contiguous in both reads; W read at [output, k] only and x at [tokens..., k]
    with no output axis; at least one token axis of symbolic extent (a prefill or a batch of
    sentences, not a decode GEMV); else None."""
    found = _reduction_block(sch, block_rv)
    if found is None:
        return None
    block, spatial, reduce = found
    loops = sch.get_loops(block_rv)
    if len(reduce) != 1 or len(spatial) < 2 or len(loops) != len(block.iter_vars) or len(block.reads) != 2:
        return None
    out, k = spatial[-1].var, reduce[0].var
    tokens = [iv.var for iv in spatial[:-1]]
    if (not isinstance(spatial[-1].dom.extent, tirx.IntImm) or not isinstance(reduce[0].dom.extent, tirx.IntImm)
            or reduce[0].dom.extent.value % LANES or not _walks_contiguously(block, k)
            or all(isinstance(iv.dom.extent, tirx.IntImm) for iv in spatial[:-1])):
        return None
    uses = [{i for i, v in enumerate([*tokens, out, k]) if any(_uses(r.min, v) for r in region.region)}
            for region in block.reads]
    token_ids, out_id, k_id = set(range(len(tokens))), len(tokens), len(tokens) + 1
    if sorted(map(sorted, uses)) != sorted([sorted(token_ids | {k_id}), [out_id, k_id]]):
        return None
    return loops[:-2], loops[-2], loops[-1]


def _schedule_token_blocked_matmul(sch: Schedule, block_rv, threads: bool, tokens: int, rows: int) -> bool:
    """x @ W^T over many tokens (prefill, a batch of sentences): a register block of `tokens` token
    rows x `rows` weight rows, each a v128 of partial sums over k. One k step loads tokens + rows
    vectors for tokens x rows multiply-adds, where the one-token block (the GEMV rule) loads
    1 + rows for rows: SIMD128 has no FMA, so 1 + 4 loads per 4 mul+adds kept the 4x4 block
    load-bound (the relaxed-SIMD builds fuse each multiply-add into one relaxed_madd, wasm.py; the
    same block measured 1.1-1.2x faster there, bench/wasm_matmul.md). Inside each sentence the
    blocks of weight rows are the parallel loop (a fixed count): a block's rows x K weights stay in
    L1 while the sentence's tokens stream past."""
    _as_one_reduction(sch, block_rv)
    axes = _dense_matmul_axes(sch, block_rv)
    if axes is None:
        return False
    token_loops, out_loop, k_loop = axes
    out_extent = sch.get(out_loop).extent.value
    if out_extent % rows:
        return False
    # pad the innermost token axis to a multiple of the block (copies of x and the output; a
    # predicate for the last block instead would leave the block's partial sums in memory: their
    # region is not provably small)
    sch.pad_einsum(block_rv, [1] * (len(token_loops) - 1) + [tokens, 1, 1])
    # the output copy and the epilogue's stages (bias, residual, GELU) inlined into its last: one
    # pass over the output instead of one full-size intermediate per stage
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(get_root_block(sch))]
    for name in names[names.index(sch.get(block_rv).name_hint) + 1:-1]:
        try:
            sch.compute_inline(sch.get_sblock(name))
        except tvm.s_tir.ScheduleError:
            pass  # not elementwise: it keeps its own loops
    *token_loops, out_loop, k_loop = sch.get_loops(block_rv)
    _, lane = sch.split(k_loop, [None, LANES])
    rf_block = sch.rfactor(lane, factor_axis=len(token_loops) + 1)
    *outer_tokens, token, out, k_outer, lane = sch.get_loops(rf_block)
    # the innermost token axis alone is blocked (a batch's sentences stay outer): fusing the batch
    # and sequence axes would make the block's region a div/mod the lane sums cannot be kept small for
    token_outer, token_inner = sch.split(token, [None, tokens])
    out_outer, out_inner = sch.split(out, [None, rows])
    # a sentence's x (seq x K) stays in L2 while every block of weight rows passes over it; with the
    # weight blocks outermost, x (3 MB for 512 tokens x 1536) came from L3 once per block
    sch.reorder(*outer_tokens, out_outer, token_outer, k_outer, token_inner, out_inner, lane)
    sch.unroll(token_inner)
    sch.unroll(out_inner)
    sch.vectorize(lane)
    if threads and out_extent // rows >= MIN_PARALLEL_BLOCKS:
        sch.parallel(out_outer)
    _decode_rows_ahead(sch, rf_block, out_outer)
    sch.reverse_compute_at(block_rv, token_outer)
    sch.decompose_reduction(rf_block, k_outer)
    return True


def _as_one_reduction(sch: Schedule, block_rv) -> None:
    """A reduction over several axes that together walk consecutive columns of every read, such as
    a quantized matmul's (g, j, l) over its "qdequant" stage (column g*J*L + j*L + l), rewritten as
    one reduction axis k over those columns: the form _dense_matmul_axes takes. The GPU schedules
    see the (g, j, l) form, in which the decode's word and scale indices simplify per loop."""
    found = _reduction_block(sch, block_rv)
    if found is None or len(found[2]) < 2:
        return
    block, spatial, reduce = found
    extents = [iv.dom.extent for iv in reduce]
    if not all(isinstance(e, tirx.IntImm) for e in extents):
        return
    inner = 1
    for iv, extent in zip(reversed(reduce), reversed(extents)):
        for region in block.reads:
            last = region.region[-1].min
            if _uses(last, iv.var) and _stride(last, iv.var) != inner:
                return
        inner *= extent.value
    n_spatial = len(spatial)

    def one_column(*iters):
        column, step = None, 1
        for it, extent in zip(reversed(iters[n_spatial:]), reversed(extents)):
            term = it * step
            column, step = term if column is None else column + term, step * extent.value
        return (*iters[:n_spatial], column)

    index_dtype = str(reduce[0].var.ty)
    sch.transform_block_layout(block_rv, IndexMap.from_func(one_column, ndim=len(block.iter_vars), index_dtype=index_dtype))


def _decode_rows_ahead(sch: Schedule, rf_block, row_block_loop) -> None:
    """A quantized matmul over many tokens reads its weight from the "qdequant" stage
    (quantized.qmatmul_compute): computed here for one register block of weight rows (rows x K
    floats, in L1) right before the tokens use it, so each weight is decoded once per call, not once
    per token. The stage's columns are split into the layouts' 32-column steps (one scale each) and
    4-column vectors, and the GGUF types' per-sub-block scales ("qdecode_*") computed once per step."""
    stages = [b for b in sch.get_producers(rf_block) if sch.get(b).name_hint == "qdequant"]
    if not stages:
        return
    (stage,) = stages
    sch.compute_at(stage, row_block_loop)
    *_, column = sch.get_loops(stage)
    step, _, lane = sch.split(column, [None, STEP_COLUMNS // LANES, LANES])
    sch.vectorize(lane)
    for producer in sch.get_producers(stage):
        if sch.get(producer).name_hint.startswith("qdecode_"):
            sch.compute_at(producer, step)


def schedule_cpu(func: tirx.PrimFunc, threads: bool = False, rows: int | None = None,
                 lanes: int | None = None, tokens: int | None = None) -> tirx.PrimFunc:
    """The CPU schedule of one fused function; functions no rule fits come back unchanged. rows,
    lanes and tokens are the tuner's knobs (webrt/compile/tuning.py): tokens > 1 (with rows) picks
    the token-blocked matmul for x @ W^T over many tokens, explicit rows and lanes alone the
    one-token block; all None picks the shipped schedule (_default_knobs, and the token block
    TOKEN_BLOCK x ROWS where it applies)."""
    sch = Schedule(tvm.IRModule({"main": func}))
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(get_root_block(sch))]
    changed = False
    blocked = (tokens or TOKEN_BLOCK, rows or ROWS) if tokens or (rows is None and lanes is None) else None
    for name in names:
        for rule in (lambda t, b: blocked is not None and _schedule_token_blocked_matmul(t, b, threads, *blocked),
                     lambda t, b: _schedule_vector_reduction(t, b, threads, rows, lanes),
                     lambda t, b: _schedule_spatial_vector(t, b, threads)):
            trial = sch.copy()
            try:
                scheduled = rule(trial, trial.get_sblock(name))
            except tvm.s_tir.ScheduleError:
                continue  # e.g. an argmax, whose reducer rfactor does not know: the next rule, or as generated
            if scheduled:
                sch, changed = trial, True
                break
    return sch.mod["main"] if changed else func
