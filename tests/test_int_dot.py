"""The integer-dot kernel of the wasm builds (webrt/compile/int_dot.c, int_dot.py): a 4-bit
matmul fused with an add (the group layout, and GGUF Q4_0 / Q4_1 in their own layout) and GGUF
Q8_0's 8-bit matmul (the real models' LM head; synthetic blocks and the Gemma 3 file's own), compiled
with int_dot="all" and run through the JS path (loader -> plan executor) on the simd build with 1
and 2 threads and on the scalar build.

Checked against numpy doing the same arithmetic (activations rounded to 16-bit integers per 32 columns,
integer sums, scale and min factored out), and against the exact f32 result within the error
that rounding allows. Token counts cover the kernel's 4-token blocks and their tails."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from tvm.relax.frontend import nn

from webrt.artifact import write_artifact
from webrt.browser import run_entries
from webrt.compile import compile_module
from webrt.cli import compile_cmd
from webrt.compile.int_dot import DEFAULT_INT_DOT, INT_DOT_MODES, use_int_dot
from webrt.models.quantized import quantized_matmul
from webrt.quantize import GROUP, from_gguf_blocks, quantize_blocks, quantize_q4
from webrt.weight_types import TYPES, pack

from tests.test_weight_types import _gemma_tensor, reference

K, N = 96, 80
LEVELS = 32767  # int_dot.c's activation codes span [-LEVELS, LEVELS]
REAL_K = 640  # Gemma 3 270M's hidden size: the columns of its Q8_0 LM head (token_embd.weight)


class IntDotChecks(nn.Module):
    def qlinear_add(self, x: nn.Tensor, qweight: nn.Tensor, scales: nn.Tensor, mins: nn.Tensor, r: nn.Tensor):
        w = SimpleNamespace(qweight=qweight, scales=scales, mins=mins, bits=4, rows=N, cols=K)
        return quantized_matmul(x, w) + r

    def q4_0_add(self, x: nn.Tensor, q: nn.Tensor, d: nn.Tensor, r: nn.Tensor):
        w = SimpleNamespace(wtype=TYPES["Q4_0"], rows=N, cols=K, tensors=lambda: [q, d])
        return quantized_matmul(x, w) + r

    def q4_1_add(self, x: nn.Tensor, q: nn.Tensor, d: nn.Tensor, m: nn.Tensor, r: nn.Tensor):
        w = SimpleNamespace(wtype=TYPES["Q4_1"], rows=N, cols=K, tensors=lambda: [q, d, m])
        return quantized_matmul(x, w) + r

    def q8_0_add(self, x: nn.Tensor, q: nn.Tensor, d: nn.Tensor, r: nn.Tensor):
        w = SimpleNamespace(wtype=TYPES["Q8_0"], rows=N, cols=K, tensors=lambda: [q, d])
        return quantized_matmul(x, w) + r

    def q8_0_real_add(self, x: nn.Tensor, q: nn.Tensor, d: nn.Tensor, r: nn.Tensor):
        w = SimpleNamespace(wtype=TYPES["Q8_0"], rows=N, cols=REAL_K, tensors=lambda: [q, d])
        return quantized_matmul(x, w) + r


class NotIntDotChecks(nn.Module):
    """Matmuls the int-dot kernel must leave alone: 5-bit codes, and the group layout's 8-bit codes
    (another word order, with a min)."""

    def q5_0(self, x: nn.Tensor, lo: nn.Tensor, hi: nn.Tensor, d: nn.Tensor):
        return quantized_matmul(x, SimpleNamespace(wtype=TYPES["Q5_0"], rows=N, cols=K, tensors=lambda: [lo, hi, d]))

    def group_q8(self, x: nn.Tensor, qweight: nn.Tensor, scales: nn.Tensor, mins: nn.Tensor):
        w = SimpleNamespace(qweight=qweight, scales=scales, mins=mins, bits=8, rows=N, cols=K)
        return quantized_matmul(x, w)


def _gguf_spec(kind: str, cols: int = K) -> dict:
    parts = {name: nn.spec.Tensor(list(shape), dtype) for name, (shape, dtype) in TYPES[kind].part_shapes(N, cols).items()}
    return {"x": nn.spec.Tensor([1, "n", cols], "float32"), **parts, "r": nn.spec.Tensor([1, "n", N], "float32")}


SPEC = {"qlinear_add": {"x": nn.spec.Tensor([1, "n", K], "float32"), "qweight": nn.spec.Tensor([N, K // 8], "uint32"),
                        "scales": nn.spec.Tensor([N, K // GROUP], "float32"),
                        "mins": nn.spec.Tensor([N, K // GROUP], "float32"),
                        "r": nn.spec.Tensor([1, "n", N], "float32")},
        "q4_0_add": _gguf_spec("Q4_0"), "q4_1_add": _gguf_spec("Q4_1"), "q8_0_add": _gguf_spec("Q8_0"),
        "q8_0_real_add": _gguf_spec("Q8_0", REAL_K)}


@pytest.fixture(scope="module")
def int_dot_artifact(tmp_path_factory):
    spec = {name: {**args, "$": {"param_mode": "none", "effect_mode": "none"}} for name, args in SPEC.items()}
    mod, _ = IntDotChecks().export_tvm(spec=spec)
    compiled = compile_module(mod, {name: list(args) for name, args in SPEC.items()}, candidates=False, int_dot="all")
    return write_artifact(tmp_path_factory.mktemp("art") / "int-dot", {"name": "int-dot-checks"}, compiled, {})


def int_dot_reference(x: np.ndarray, codes: np.ndarray, scales: np.ndarray, mins: np.ndarray) -> np.ndarray:
    """x [m, K] against integer codes [N, K]: x rounded to integers in [-LEVELS, LEVELS] per group of 32
    (int_dot.c), integer sums."""
    m = x.shape[0]
    xg = x.reshape(m, -1, GROUP)
    d = (np.abs(xg).max(axis=2) / np.float32(LEVELS)).astype(np.float32)
    inv = np.where(d > 0, np.float32(1) / np.where(d > 0, d, 1), 0).astype(np.float32)
    a = np.rint(xg * inv[:, :, None]).astype(np.int64)
    c = codes.reshape(codes.shape[0], -1, GROUP).astype(np.int64)
    dots = np.einsum("mgc,ngc->mng", a, c).astype(np.float64)
    out = (dots * scales[None].astype(np.float64) * d[:, None, :]).sum(-1)
    return (out + xg.sum(axis=2).astype(np.float64) @ mins.T.astype(np.float64)).astype(np.float32)


def test_int_dot_replaces_the_q4_and_q8_0_matmuls():
    mod, _ = IntDotChecks().export_tvm(spec={n: {**a, "$": {"param_mode": "none", "effect_mode": "none"}}
                                             for n, a in SPEC.items()})
    from webrt.compile import webgpu_target
    from webrt.compile.relax_pipeline import fusion_passes, run_passes
    fused = run_passes(mod, webgpu_target(), fusion_passes())
    funcs = {gv.name_hint: f for gv, f in fused.functions_items() if hasattr(f, "body") and "qmatmul" in gv.name_hint}
    assert len(funcs) == len(SPEC), f"fused qmatmul functions: {sorted(funcs)}"
    for f in funcs.values():
        script = use_int_dot(f).script()
        assert "webrt_int_dot" in script and 'sblock("qmatmul")' not in script
        assert 'sblock("T_add")' in script  # the fused epilogue stays TIR
    no_r = {k: v for k, v in SPEC["qlinear_add"].items() if k != "r"}
    others = {"q5_0": {k: v for k, v in _gguf_spec("Q5_0").items() if k != "r"},
              "group_q8": {**no_r, "qweight": nn.spec.Tensor([N, K // 4], "uint32")}}
    others = {name: {**args, "$": {"param_mode": "none", "effect_mode": "none"}} for name, args in others.items()}
    mod, _ = NotIntDotChecks().export_tvm(spec=others)
    fused = run_passes(mod, webgpu_target(), fusion_passes())
    funcs = [f for gv, f in fused.functions_items() if hasattr(f, "body") and "qmatmul" in gv.name_hint]
    assert len(funcs) == 2 and all(use_int_dot(f) is None for f in funcs)


def _fused_qmatmuls(tokens) -> dict:
    """IntDotChecks' fused qmatmul functions for x of this many tokens (1, or the symbolic "n")."""
    from webrt.compile import webgpu_target
    from webrt.compile.relax_pipeline import fusion_passes, run_passes

    def with_tokens(spec):
        return {k: nn.spec.Tensor([1, tokens, *v.shape[2:]], v.dtype) if k in ("x", "r") else v for k, v in spec.items()}

    spec = {name: {**with_tokens(args), "$": {"param_mode": "none", "effect_mode": "none"}} for name, args in SPEC.items()}
    mod, _ = IntDotChecks().export_tvm(spec=spec)
    fused = run_passes(mod, webgpu_target(), fusion_passes())
    return {gv.name_hint: f for gv, f in fused.functions_items() if hasattr(f, "body") and "qmatmul" in gv.name_hint}


def test_the_modes_take_the_one_token_matmuls_of_their_widths():
    """--int-dot decode (the default) replaces every one-token 4-bit and Q8_0 matmul, q8_0 only the
    Q8_0 ones, neither a many-token matmul (it decodes each weight once for all tokens); all takes
    those too; none replaces nothing."""
    assert DEFAULT_INT_DOT == "decode"
    option = next(p for p in compile_cmd.params if p.name == "int_dot")
    assert list(option.type.choices) == list(INT_DOT_MODES) and option.default == DEFAULT_INT_DOT
    for tokens in (1, "n"):
        funcs = _fused_qmatmuls(tokens)
        assert len(funcs) == len(SPEC), f"fused qmatmul functions: {sorted(funcs)}"
        # the kernel call's bits argument: 8 for the Q8_0 entries' functions, 4 for the others
        eight_bit = sorted(name for name, f in funcs.items() if ", 0, 8, " in use_int_dot(f, "all").script())
        assert len(eight_bit) == 2
        taken = {mode: sorted(name for name, f in funcs.items() if use_int_dot(f, mode) is not None)
                 for mode in INT_DOT_MODES}
        assert taken["q8_0"] == (eight_bit if tokens == 1 else []), (tokens, taken)
        assert taken["decode"] == (sorted(funcs) if tokens == 1 else []), (tokens, taken)
        assert taken["all"] == sorted(funcs) and taken["none"] == []


@pytest.mark.parametrize("mode", ["decode", "q8_0", "none"])
def test_the_other_kernel_of_a_gemv_is_a_tuner_candidate(mode):
    """Whether the int-dot or the exact f32 kernel is faster depends on the CPU (int_dot.py), so
    each one-token 4-bit or Q8_0 matmul ships the kernel its default does not use as a candidate;
    a many-token matmul has none, and the candidate runs what its knob says."""
    from webrt.compile.tuning import wasm_candidate_func, wasm_candidates

    for tokens in (1, "n"):
        for name, f in _fused_qmatmuls(tokens).items():
            found = [c for c in wasm_candidates(name, f, mode) if "int_dot" in c["knobs"]]
            if tokens != 1:
                assert found == [], name
                continue
            default_is_int_dot = use_int_dot(f, mode) is not None
            assert [c["knobs"] for c in found] == [{"int_dot": not default_is_int_dot}], name
            script = wasm_candidate_func(f, found[0]["knobs"], threads=0).script()
            assert ("webrt_int_dot" in script) == (not default_is_int_dot), name


def _weights(entry: str, rng: np.random.Generator):
    """(the entry's weight arguments, the same weight as codes / scales / mins in float32, the weight
    as its reference dequantizes it: gguf.quants for the GGUF types). The real entry takes the
    first rows of the Gemma 3 file's LM head."""
    if entry == "qlinear_add":
        q = quantize_q4(rng.standard_normal((N, K), dtype=np.float32))
        return {"qweight": q.packed(), "scales": q.scales, "mins": q.mins}, q, q.dequantize()
    kind = {"q4_0_add": "Q4_0", "q4_1_add": "Q4_1", "q8_0_add": "Q8_0", "q8_0_real_add": "Q8_0"}[entry]
    if entry == "q8_0_real_add":
        tensor = _gemma_tensor("token_embd.weight")
        assert tensor.tensor_type.name == kind and int(tensor.shape[0]) == REAL_K
        raw = np.asarray(tensor.data)[:N]
    else:
        raw = quantize_blocks(rng.standard_normal((N, K), dtype=np.float32), kind)
    return pack(TYPES[kind], raw), from_gguf_blocks(raw, kind), reference(kind, raw)


@pytest.mark.parametrize("entry", ["qlinear_add", "q4_0_add", "q4_1_add", "q8_0_add", "q8_0_real_add"])
@pytest.mark.parametrize("threads, build", [(1, None), (2, None), (1, "scalar")],
                         ids=["wasm-1thread", "wasm-2threads", "wasm-scalar"])
def test_int_dot_matches_numpy(int_dot_artifact, threads, build, entry):
    rng = np.random.default_rng(0)
    weights, q, w = _weights(entry, rng)
    cols = w.shape[1]
    jobs, cases = [], []
    for n in (1, 3, 6, 77):
        x = rng.standard_normal((1, n, cols), dtype=np.float32)
        x[0, 0, :GROUP] = 0  # an all-zero group: scale 0, no division by it
        r = rng.standard_normal((1, n, N), dtype=np.float32)
        jobs.append((entry, {name: {"data": a.ravel().tolist(), "shape": list(a.shape), "dtype": str(a.dtype)}
                             for name, a in {"x": x, **weights, "r": r}.items()}))
        cases.append((x, r))
    outputs = run_entries(int_dot_artifact, jobs, "wasm", threads, build)
    for (x, r), out in zip(cases, outputs):
        got = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
        same_math = int_dot_reference(x[0], q.codes, q.scales, q.mins)[None] + r
        exact = x @ w.T + r
        scale = np.abs(exact).max()
        err = np.abs(got - same_math).max()
        assert err <= 2e-5 * scale, f"n={x.shape[1]}: max abs error {err} against numpy's integer arithmetic"
        # 16-bit activations: at most 1/65534 of each group's largest |x| per weight; this bound
        # fails with llama.cpp's 8-bit rounding (1/254)
        rounding = np.abs(got - exact).max()
        assert rounding <= 2e-4 * scale, f"n={x.shape[1]}: {rounding} from the exact f32 result"
