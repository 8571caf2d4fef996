"""Single kernels (matmul, x @ W^T, the q4 / q8 matmul, RMSNorm, softmax) compiled by the compile stage
and run through the same JS path as the models (loader -> plan executor), on WebGPU and on the wasm
kernels with 1 and 2 threads, checked against numpy. The wasm runs exercise the CPU schedules
(webrt/compile/cpu_schedule.py): SIMD partial sums, 4-row blocks, the one-row GEMV of a decode
step, parallel loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import op

from types import SimpleNamespace

from webrt.artifact import write_artifact
from webrt.browser import run_entries
from webrt.compile import compile_module
from webrt.models.bert import erf_gelu
from webrt.models.quantized import quantized_matmul
from webrt.quantize import GROUP, Quantized, quantize_q4
from tests.test_parity import BACKEND_IDS, BACKENDS

K, N = 96, 80


class KernelChecks(nn.Module):
    """One entry per kernel; the row count "n" is symbolic, like a sequence length."""

    def matmul(self, a: nn.Tensor, b: nn.Tensor):
        return op.matmul(a, b)

    def linear(self, x: nn.Tensor, w: nn.Tensor):
        return op.matmul(x, op.permute_dims(w))  # x @ W^T, as nn.Linear

    def encoder_ffn(self, x: nn.Tensor, w: nn.Tensor, bias: nn.Tensor):
        # a batch of sentences ("b" x "s" tokens): the token-blocked matmul (padded sequence axis)
        # with its bias and GELU inlined into one epilogue
        return erf_gelu(op.matmul(x, op.permute_dims(w)) + bias)

    def gemv(self, x: nn.Tensor, w: nn.Tensor):
        return op.matmul(x, op.permute_dims(w))  # one static row: the decode-step schedule

    def qlinear4(self, x: nn.Tensor, qweight: nn.Tensor, scales: nn.Tensor, mins: nn.Tensor):
        return quantized_matmul(x, SimpleNamespace(qweight=qweight, scales=scales, mins=mins, bits=4, rows=N, cols=K))

    def qlinear8(self, x: nn.Tensor, qweight: nn.Tensor, scales: nn.Tensor, mins: nn.Tensor):
        return quantized_matmul(x, SimpleNamespace(qweight=qweight, scales=scales, mins=mins, bits=8, rows=N, cols=K))

    def rms_norm(self, x: nn.Tensor, weight: nn.Tensor):
        return op.rms_norm(x, weight, axes=[-1], epsilon=1e-5)

    def softmax(self, x: nn.Tensor):
        return op.softmax(x, axis=-1)


def _quantized_spec(bits: int) -> dict:
    return {"x": nn.spec.Tensor([1, "n", K], "float32"), "qweight": nn.spec.Tensor([N, K * bits // 32], "uint32"),
            "scales": nn.spec.Tensor([N, K // GROUP], "float32"), "mins": nn.spec.Tensor([N, K // GROUP], "float32")}


SPEC = {
    "matmul": {"a": nn.spec.Tensor(["n", K], "float32"), "b": nn.spec.Tensor([K, N], "float32")},
    "linear": {"x": nn.spec.Tensor(["n", K], "float32"), "w": nn.spec.Tensor([N, K], "float32")},
    "encoder_ffn": {"x": nn.spec.Tensor(["b", "s", K], "float32"), "w": nn.spec.Tensor([N, K], "float32"),
                    "bias": nn.spec.Tensor([N], "float32")},
    "gemv": {"x": nn.spec.Tensor([1, 1, K], "float32"), "w": nn.spec.Tensor([N, K], "float32")},
    "qlinear4": _quantized_spec(4),
    "qlinear8": _quantized_spec(8),
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


def _quantized_job(x: np.ndarray, q: Quantized) -> dict:
    return {"x": _input(x), "qweight": _input(q.packed()), "scales": _input(q.scales), "mins": _input(q.mins)}


# this Chromium has SIMD and relaxed SIMD, so wasm runs the relaxed builds: the plain SIMD128 builds
# (browsers without relaxed SIMD) and the scalar build (browsers without SIMD) are forced here
FORCED = [("wasm", 1, "simd"), ("wasm", 2, "threads"), ("wasm", 1, "scalar")]


@pytest.mark.parametrize("device, threads, build", [(*b, None) for b in BACKENDS] + FORCED,
                         ids=[*BACKEND_IDS, "wasm-simd", "wasm-threads", "wasm-scalar"])
def test_kernels_match_numpy(kernel_artifact, device, threads, build):
    rng = np.random.default_rng(0)
    jobs, expected = [], []
    for n in (1, 5, 77):
        a, b = rng.standard_normal((n, K), dtype=np.float32), rng.standard_normal((K, N), dtype=np.float32)
        jobs.append(("matmul", {"a": _input(a), "b": _input(b)}))
        expected.append(a @ b)
        w = rng.standard_normal((N, K), dtype=np.float32)
        jobs.append(("linear", {"x": _input(a), "w": _input(w)}))
        expected.append(a @ w.T)
        x = rng.standard_normal((1, n, K), dtype=np.float32)
        q4 = quantize_q4(w)
        jobs.append(("qlinear4", _quantized_job(x, q4)))
        expected.append(x @ q4.dequantize().T)
        q8 = Quantized(rng.integers(-128, 128, size=(N, K)).astype(np.int8),
                       rng.random((N, K // GROUP), dtype=np.float32) * 0.02, np.zeros((N, K // GROUP), np.float32), 8)
        jobs.append(("qlinear8", _quantized_job(x, q8)))
        expected.append(x @ q8.dequantize().T)
        x, w = rng.standard_normal((n, 320), dtype=np.float32), rng.standard_normal(320, dtype=np.float32)
        jobs.append(("rms_norm", {"x": _input(x), "weight": _input(w)}))
        expected.append(x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w)
        s = rng.standard_normal((n, 1000), dtype=np.float32) * 5
        jobs.append(("softmax", {"x": _input(s)}))
        e = np.exp(s - s.max(-1, keepdims=True))
        expected.append(e / e.sum(-1, keepdims=True))
    erf = np.vectorize(math.erf)
    for b, s in ((1, 1), (2, 5), (3, 8)):
        x, w = rng.standard_normal((b, s, K), dtype=np.float32), rng.standard_normal((N, K), dtype=np.float32) * 0.1
        bias = rng.standard_normal(N, dtype=np.float32)
        jobs.append(("encoder_ffn", {"x": _input(x), "w": _input(w), "bias": _input(bias)}))
        h = x.astype(np.float64) @ w.T + bias
        expected.append((h / 2 * (1 + erf(h / math.sqrt(2)))).astype(np.float32))
    x, w = rng.standard_normal((1, 1, K), dtype=np.float32), rng.standard_normal((N, K), dtype=np.float32)
    jobs.append(("gemv", {"x": _input(x), "w": _input(w)}))
    expected.append(x @ w.T)

    outputs = run_entries(kernel_artifact, jobs, device, threads, build)
    for (entry, _), out, ref in zip(jobs, outputs, expected):
        got = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
        assert got.shape == ref.shape, entry
        err = np.abs(got - ref).max()
        assert err <= 1e-4 * max(1.0, np.abs(ref).max()), f"{entry} {ref.shape}: max abs error {err}"
