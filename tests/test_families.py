"""The model families beyond LLaMA (Qwen 3, Gemma 3, Phi-3) against transformers on the same random
weights: logits on WebGPU and wasm (1 and 2 threads), and greedy tokens through prefill/decode
across a chunk boundary and a second turn."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models import make_hf_model
from tests.test_generation import generate, hf_greedy
from tests.test_parity import BACKEND_IDS, BACKENDS, assert_matches_reference
from webrt.build_artifact import compile_model

WINDOW = 8  # Gemma's and Phi-3's sliding window here: every prompt below is longer
# Longer than a sliding layer's ring (window + 127 rows): chunks of 128 wrap it around
PROMPT = np.random.default_rng(3).integers(0, 2048, size=150).tolist()

FAMILIES = {
    # q/k norms, a head_dim that is not hidden / heads
    "qwen3": dict(num_hidden_layers=2, head_dim=32),
    # local / global layers with their own RoPE bases, a query scale that is not 1/sqrt(head_dim)
    "gemma3": dict(num_hidden_layers=3, head_dim=64, query_pre_attn_scalar=48, sliding_window=WINDOW,
                   layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                   rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                    "full_attention": {"rope_type": "default", "rope_theta": 1e6}}),
    # fused qkv and gate_up, a window on every layer
    "phi3": dict(num_hidden_layers=2, sliding_window=WINDOW),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family_model(request, tmp_path_factory):
    """(HF folder, compiled artifact) of one family."""
    folder = make_hf_model(tmp_path_factory.mktemp("hf") / request.param, request.param, **FAMILIES[request.param])
    return folder, compile_model(folder, tmp_path_factory.mktemp("art") / request.param, tuning_candidates=False)


def test_logits_match_transformers(family_model):
    folder, artifact = family_model
    rng = np.random.default_rng(1)
    lists = [rng.integers(0, 2048, size=n).tolist() for n in (1, 7, 40)]
    for device, threads in BACKENDS:
        assert_matches_reference(folder, artifact, lists, device, threads)


@pytest.mark.parametrize("device, threads", [BACKENDS[0], BACKENDS[1]], ids=BACKEND_IDS[:2])
def test_greedy_tokens_match_transformers_across_chunks_and_turns(family_model, device, threads):
    folder, artifact = family_model
    n, turn = 32, [77, 1888, 5]
    expected = hf_greedy(folder, PROMPT, n)
    second_prompt = PROMPT + expected[:-1] + turn
    expected_second = hf_greedy(folder, second_prompt, n)
    greedy = {"temperature": 0}
    runs = generate(artifact, [
        {"prompt": PROMPT, "n": n, "sampling": greedy, "chunk": 128, "nextTurn": turn},
        {"prompt": PROMPT, "n": n, "sampling": greedy, "chunk": 5, "nextTurn": turn},
    ], device, threads)
    for run in runs:  # in chunks of 128 (the most a ring takes), then of 5
        assert run["tokens"] == expected
        assert run["second"]["reused"] == len(PROMPT) + n - 1
        assert run["second"]["tokens"] == expected_second


def test_phi3_longrope_matches_transformers(tmp_path):
    """LongRoPE past the pretraining length: the long factors and the attention factor."""
    rng = np.random.default_rng(2)
    half = 32  # head_dim 64 / 2
    scaling = {"rope_type": "longrope", "short_factor": (1 + rng.random(half)).tolist(),
               "long_factor": (1 + 4 * rng.random(half)).tolist()}
    folder = make_hf_model(tmp_path / "hf", "phi3", num_hidden_layers=2, max_position_embeddings=128,
                           original_max_position_embeddings=64, rope_parameters=scaling)
    artifact = compile_model(folder, tmp_path / "artifact", tuning_candidates=False)
    tokens = [rng.integers(0, 2048, size=80).tolist()]  # past 64: transformers takes the long factors
    assert_matches_reference(folder, artifact, tokens, "wasm", 1)


# --- GGUF import: each family's metadata and tensor names, from a file written as llama.cpp would ---

# (llama GGUF files are the default model's format: tests/test_default_model.py)
GGUF_FAMILIES = {  # GGUF architecture -> (transformers model, overrides)
    "qwen2": ("qwen2", dict(num_hidden_layers=2, tie_word_embeddings=True)),
    # transformers reads no head_dim from a qwen3 GGUF (its default is 128, as in Qwen 3's own models)
    "qwen3": ("qwen3", dict(num_hidden_layers=2, head_dim=128, num_attention_heads=2, num_key_value_heads=1)),
    # transformers reads no query scale or layer pattern from a GGUF: its defaults are llama.cpp's
    # (query 1/sqrt(256), every sixth layer global), so head_dim is 256 and the window small
    "gemma3": ("gemma3", dict(num_hidden_layers=6, head_dim=256, num_attention_heads=2, num_key_value_heads=1,
                              sliding_window=WINDOW)),
    "phi3": ("phi3", dict(num_hidden_layers=2)),
}
_LAYER_GGUF = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
               "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "self_attn.qkv_proj": "attn_qkv", "mlp.gate_proj": "ffn_gate",
               "mlp.up_proj": "ffn_up", "mlp.gate_up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
               "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"}
_GEMMA_GGUF = {"post_attention_layernorm": "post_attention_norm", "pre_feedforward_layernorm": "ffn_norm",
               "post_feedforward_layernorm": "post_ffw_norm"}


def write_gguf(folder, path, arch: str, quantize: bool = True):
    """The HF folder's weights as llama.cpp's converter writes them for these architectures (Gemma's
    norms with their 1 folded in, LLaMA's q/k rows interleaved and its llama3 RoPE scaling as the
    rope_freqs tensor, 2-D weights as Q8_0 unless not quantize), with the default model's tokenizer
    (its vocabulary sizes the model)."""
    import gguf
    from safetensors.numpy import load_file

    from tests.models import finish_gguf, read_config, start_gguf

    cfg = read_config(folder)
    rope = cfg.get("rope_parameters") or {}
    writer = start_gguf(folder, path, arch, float(rope.get("full_attention", rope).get("rope_theta", 10000.0)))
    if arch == "gemma3":
        writer.add_sliding_window(cfg["sliding_window"])
    if rope.get("rope_type") == "llama3":
        writer.add_tensor("rope_freqs.weight", llama3_rope_freqs(cfg))
    for name, array in load_file(str(folder / "model.safetensors")).items():
        array = array.astype(np.float32)
        if name == "model.embed_tokens.weight":
            out = "token_embd.weight"
        elif name == "model.norm.weight":
            out = "output_norm.weight"
        elif name == "lm_head.weight":
            out = "output.weight"
        else:
            _, _, layer, rest = name.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            out = f"blk.{layer}.{(_GEMMA_GGUF if arch == 'gemma3' else {}).get(module) or _LAYER_GGUF[module]}.{kind}"
        if arch == "gemma3" and name.endswith("norm.weight"):
            array = array + 1
        if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):  # rotary halves interleaved
            n = cfg["num_attention_heads"] if "q_proj" in name else cfg["num_key_value_heads"]
            array = array.reshape(n, 2, array.shape[0] // n // 2, -1).swapaxes(1, 2).reshape(array.shape)
        if array.ndim == 2 and quantize:
            writer.add_tensor(out, gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(out, array)
    finish_gguf(writer)
    return path


def llama3_rope_freqs(cfg: dict) -> np.ndarray:
    """llama.cpp's converter for Llama 3.1: each rotary frequency's divisor under the llama3 scaling
    (1 for short wavelengths, factor for long ones, a smooth blend between)."""
    import math

    rope = cfg["rope_parameters"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    out = []
    for freq in 1.0 / (rope["rope_theta"] ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def test_llama3_rope_scaling_from_gguf_matches_transformers(tmp_path):
    """Llama 3.1's RoPE scaling in a GGUF (the rope_freqs tensor llama.cpp's converter writes) against
    transformers on the Hugging Face folder it came from (transformers' GGUF reader drops the
    tensor): logits at positions past the original context, on WebGPU."""
    from tests.models import reference_logits
    from webrt.browser import run_forward

    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8}
    folder = make_hf_model(tmp_path / "hf", "llama", hidden_size=64, intermediate_size=128, vocab_size=49152,
                           num_hidden_layers=2, max_position_embeddings=64, rope_parameters=rope)
    path = write_gguf(folder, tmp_path / "llama31.gguf", "llama", quantize=False)  # float: the folder's numbers
    artifact = compile_model(path, tmp_path / "artifact", tuning_candidates=False)
    tokens = np.random.default_rng(4).integers(0, 49152, size=40).tolist()
    ours = np.array(run_forward(artifact, [tokens])["results"][0]["logits"], dtype=np.float32)
    ref = reference_logits(folder, tokens)
    assert np.abs(ours - ref).max() <= 1e-3 * np.abs(ref).max()
    assert (ours.argmax(-1) == ref.argmax(-1)).all()
    # the scaling matters here: without it the same weights give other logits
    unscaled = make_hf_model(tmp_path / "unscaled", "llama", hidden_size=64, intermediate_size=128,
                             vocab_size=49152, num_hidden_layers=2, max_position_embeddings=64,
                             rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    assert np.abs(reference_logits(unscaled, tokens) - ref).max() > 1e-2 * np.abs(ref).max()


def gguf_reference_logits(path, tokens):
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                              torch_dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].numpy()


# gemma3-split: its tied Q8_0 embedding (49152 rows of 64 B codes + 8 B scales, 3.4 MiB) over a
# 1 MiB binding limit, so the gather and the LM head read it in three parts (webrt/models/split.py)
GGUF_CASES = [(arch, None) for arch in GGUF_FAMILIES] + [("gemma3", 1 << 20)]


@pytest.mark.parametrize("arch, max_binding", GGUF_CASES, ids=[*GGUF_FAMILIES, "gemma3-split"])
def test_gguf_import_matches_transformers(tmp_path, arch, max_binding):
    """Each GGUF architecture's metadata and tensor names, against transformers loading the same
    file (gguf_file=): logits on WebGPU, argmax equal."""
    from webrt.browser import run_forward

    hf_arch, overrides = GGUF_FAMILIES[arch]
    folder = make_hf_model(tmp_path / "hf", hf_arch, hidden_size=64, intermediate_size=128, vocab_size=49152,
                           max_position_embeddings=64, **overrides)
    path = write_gguf(folder, tmp_path / f"{arch}.gguf", arch)
    # split: the file's own Q8_0 blocks (q4f32 keeps each GGUF tensor's type), split in its own layout
    options = {} if max_binding is None else {"max_binding_bytes": max_binding, "quantization": "q4f32"}
    artifact = compile_model(path, tmp_path / "artifact", tuning_candidates=False, **options)
    tokens = [5, 17, 300, 1000, 42, 7, 99, 1234, 2000, 3, 64, 1500]  # longer than Gemma's window
    if max_binding is not None:  # the first and last rows of every part (16384 rows each)
        tokens += [16383, 16384, 32767, 32768, 49151]
        assert_split(artifact, "model.embed_tokens", 3, max_binding)
    ours = np.array(run_forward(artifact, [tokens])["results"][0]["logits"], dtype=np.float32)
    ref = gguf_reference_logits(path, tokens)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-3 * np.abs(ref).max()
    assert (ours.argmax(-1) == ref.argmax(-1)).all()


# --- tables over a WebGPU binding's limit, split by rows ---

def assert_split(artifact, prefix: str, parts: int, limit: int) -> None:
    """The table's tensors are `parts` parts, each within `limit`, and the manifest names the largest."""
    from webrt.artifact import read_manifest

    manifest = read_manifest(artifact)
    tensors = manifest["weights"]["tensors"]
    assert not [t["name"] for t in tensors if t["name"].startswith(prefix + ".") and ".parts." not in t["name"]]
    assert {int(t["name"].split(".parts.")[1].split(".")[0]) for t in tensors
            if t["name"].startswith(prefix + ".parts.")} == set(range(parts))
    largest = max(tensors, key=lambda t: t["bytes"])
    assert manifest["device"]["largest_binding"] == {"name": largest["name"], "bytes": largest["bytes"]}
    assert largest["bytes"] <= limit


def test_tables_over_the_binding_limit_are_split_by_rows(tmp_path):
    """An untied float LLaMA whose embedding and LM head (2048 x 256 f32, 2 MiB each) exceed an
    800 kB binding limit: three parts of 683, 683 and 682 rows each, logits equal to transformers'
    for tokens at every part's first and last row, on WebGPU and wasm."""
    folder = make_hf_model(tmp_path / "hf", "llama", num_hidden_layers=1)
    artifact = compile_model(folder, tmp_path / "artifact", tuning_candidates=False, max_binding_bytes=800_000)
    for prefix in ("model.embed_tokens", "lm_head"):
        assert_split(artifact, prefix, 3, 800_000)
    tokens = [[0, 682, 683, 1365, 1366, 2047, 5, 1000]]
    for device, threads in BACKENDS[:2]:
        assert_matches_reference(folder, artifact, tokens, device, threads)
