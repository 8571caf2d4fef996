"""The Relax pipeline: a visible list of passes, each doing one job.

After it, the entry functions are flat lists of alloc_storage / alloc_tensor / reshape / kernel calls,
which webrt.compile.plan turns into the artifact's execution plan.
"""

from __future__ import annotations

import tvm
from tvm import relax

from .schedule import apply_gpu_schedules


def fusion_passes() -> list[tuple[str, tvm.transform.Pass]]:
    """Up to fused, unscheduled TIR: what every backend shares (the wasm build starts here)."""
    return [
        # x @ W^T as one kernel, instead of a transpose of every weight per call
        ("fuse transpose into matmul", relax.transform.FuseTransposeMatmul()),
        # softmax / exp / tanh / erf as topi's fast_* polynomials: libm's expf is about 20x slower in
        # wasm, and the error (about 1e-7 relative) is below what f32 parity needs
        ("fast math", relax.transform.FastMathTransform()),
        ("legalize ops to TIR", relax.transform.LegalizeOps()),
        ("annotate op patterns", relax.transform.AnnotateTIROpPattern()),
        ("fold constants", relax.transform.FoldConstant()),
        ("fuse ops", relax.transform.FuseOps()),
        ("fuse TIR", relax.transform.FuseTIR()),
    ]


def lowering_passes(schedule: str = "portable") -> list[tuple[str, tvm.transform.Pass]]:
    """From fused TIR to the flat, memory-planned entry functions the plan is read from."""
    return [
        (f"schedule ({schedule})", apply_gpu_schedules(schedule)),
        ("reshapes to views", relax.transform.RewriteDataflowReshape()),
        ("leave dataflow form", relax.transform.ToNonDataflow()),
        ("drop purity checks", relax.transform.RemovePurityChecking()),
        ("explicit output buffers", relax.transform.CallTIRRewrite()),
        ("static memory plan", relax.transform.StaticPlanBlockMemory()),
        ("dead code elimination", relax.transform.DeadCodeElimination()),
        # the TIR pipeline fails on functions without a global symbol
        ("attach global symbols", relax.transform.AttachGlobalSymbol()),
    ]


def relax_passes(schedule: str = "portable") -> list[tuple[str, tvm.transform.Pass]]:
    return fusion_passes() + lowering_passes(schedule)


def run_passes(mod: tvm.IRModule, target: tvm.target.Target, passes) -> tvm.IRModule:
    with target:
        for _name, rewrite in passes:
            mod = rewrite(mod)
    return mod


def run_relax_pipeline(mod: tvm.IRModule, target: tvm.target.Target, schedule: str = "portable") -> tvm.IRModule:
    return run_passes(mod, target, relax_passes(schedule))
