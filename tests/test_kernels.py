"""Single kernels (matmul, RMSNorm, softmax) compiled by the compile stage and run through the same JS
path as the models (loader -> plan executor -> WebGPU), checked against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import op

from webrt.artifact import write_artifact
from webrt.browser import run_entries
from webrt.compile import compile_module


class KernelChecks(nn.Module):
    """One entry per kernel; the row count "n" is symbolic, like a sequence length."""

    def matmul(self, a: nn.Tensor, b: nn.Tensor):
        return op.matmul(a, b)

    def rms_norm(self, x: nn.Tensor, weight: nn.Tensor):
        return op.rms_norm(x, weight, axes=[-1], epsilon=1e-5)

    def softmax(self, x: nn.Tensor):
        return op.softmax(x, axis=-1)


SPEC = {
    "matmul": {"a": nn.spec.Tensor(["n", 96], "float32"), "b": nn.spec.Tensor([96, 80], "float32")},
    "rms_norm": {"x": nn.spec.Tensor(["n", 320], "float32"), "weight": nn.spec.Tensor([320], "float32")},
    "softmax": {"x": nn.spec.Tensor(["n", 1000], "float32")},
}


@pytest.fixture(scope="module")
def kernel_artifact(tmp_path_factory):
    module = KernelChecks()
    spec = {name: {**args, "$": {"param_mode": "none", "effect_mode": "none"}} for name, args in SPEC.items()}
    mod, _ = module.export_tvm(spec=spec)
    compiled = compile_module(mod, {name: list(args) for name, args in SPEC.items()})
    return write_artifact(tmp_path_factory.mktemp("art") / "kernels", {"name": "kernel-checks"}, compiled, {})


def _input(array: np.ndarray) -> dict:
    return {"data": array.ravel().tolist(), "shape": list(array.shape), "dtype": str(array.dtype)}


def test_kernels_match_numpy(kernel_artifact):
    rng = np.random.default_rng(0)
    jobs, expected = [], []
    for n in (1, 5, 77):
        a, b = rng.standard_normal((n, 96), dtype=np.float32), rng.standard_normal((96, 80), dtype=np.float32)
        jobs.append(("matmul", {"a": _input(a), "b": _input(b)}))
        expected.append(a @ b)
        x, w = rng.standard_normal((n, 320), dtype=np.float32), rng.standard_normal(320, dtype=np.float32)
        jobs.append(("rms_norm", {"x": _input(x), "weight": _input(w)}))
        expected.append(x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w)
        s = rng.standard_normal((n, 1000), dtype=np.float32) * 5
        jobs.append(("softmax", {"x": _input(s)}))
        e = np.exp(s - s.max(-1, keepdims=True))
        expected.append(e / e.sum(-1, keepdims=True))

    outputs = run_entries(kernel_artifact, jobs)
    for (entry, _), out, ref in zip(jobs, outputs, expected):
        got = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
        assert got.shape == ref.shape, entry
        err = np.abs(got - ref).max()
        assert err <= 1e-4 * max(1.0, np.abs(ref).max()), f"{entry} {ref.shape}: max abs error {err}"
