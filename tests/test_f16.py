"""q4f16 (issue 18): a q4f16 artifact carries the f32 kernel set (WebGPU and wasm) and a WebGPU f16
set (float16 activations and KV cache, f32 accumulation in matmuls, softmax, norms and RoPE) over
the same weight files. In Deno on wgpu/lavapipe (shader-f16) the shell runs the f16 set; in
Chromium on SwiftShader (no shader-f16) the same artifact runs the f32 set and says so.

Both are checked against transformers in float32 on the same quantized weights (the q4 groups
dequantized into the checkpoint). The f16 bound: max abs error within F16_BOUND of the logits'
range, and argmax equal wherever the reference's top-2 margin is over twice that error (a position
with a smaller margin is a near-tie that f16 rounding may flip; the test reports how many).
The tables are compiled over a small binding limit, so both sets bind them in parts (split.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

from tests.models import make_hf_model
from tests.test_parity import token_lists
from webrt import browser, deno_driver
from webrt.build_artifact import compile_model
from webrt.quantize import quantize_q4

# float16 keeps 11 significant bits (unit roundoff 4.9e-4); activations are rounded to it after
# every layer's steps; this random model measured 1.1-3.7e-3 of the range (printed by compare)
F16_BOUND = 1e-2
F32_BOUND = 1e-3  # tests/test_parity.py's
SPLIT_AT = 150_000  # bytes: the 2048 x 256 embedding's and LM head's 4-bit codes take 262,144


@pytest.fixture(scope="module")
def q4f16(tmp_path_factory):
    """(artifact, reference logits per token list, token lists) for a random 2-layer LLaMA."""
    tmp = tmp_path_factory.mktemp("q4f16")
    folder = make_hf_model(tmp / "hf", "llama", num_hidden_layers=2)
    # the embedding and the LM head over this binding limit: both kernel sets bind them in parts
    artifact = compile_model(folder, tmp / "art", "q4f16", tuning_candidates=False, max_binding_bytes=SPLIT_AT)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    lists = token_lists(2048)
    with torch.no_grad():  # the reference holds exactly the weights the artifact encodes
        for _, param in model.named_parameters():
            if param.ndim == 2:
                param.copy_(torch.from_numpy(quantize_q4(param.numpy()).dequantize()))
        refs = [model(torch.tensor([tokens])).logits[0].numpy() for tokens in lists]
    return artifact, refs, lists


def compare(result, refs, bound: float) -> None:
    for ref, run in zip(refs, result["results"]):
        ours = np.array(run["logits"], dtype=np.float32)
        err = np.abs(ours - ref).max()
        top2 = np.sort(ref, axis=-1)[:, -2:]
        decided = top2[:, 1] - top2[:, 0] > 2 * err  # margins f16 rounding cannot flip
        agree = ours.argmax(-1) == ref.argmax(-1)
        print(f"{result['precision']} seq {len(ref)}: max abs error {err:.2e} = {err / np.abs(ref).max():.2e} "
              f"of the range; argmax {agree.sum()}/{len(ref)}, near-ties {(~decided).sum()}")
        assert err <= bound * np.abs(ref).max(), f"seq {len(ref)}: max abs error {err}"
        assert agree[decided].all(), f"seq {len(ref)}: argmax differs where the reference's margin is over 2x the error"


def test_artifact_has_an_f16_set_with_a_half_size_kv_cache(q4f16):
    artifact, _, _ = q4f16
    manifest = json.loads((artifact / "manifest.json").read_text())
    f16 = manifest["kernel_sets"]["f16"]
    assert f16["features"] == ["shader-f16"]
    codes = [(artifact / k["file"]).read_text() for k in f16["kernels"].values()]
    assert all("enable f16;" in code for code in codes if "f16" in code)
    assert sum("array<f16>" in code for code in codes) > len(codes) / 2  # most kernels move f16 data
    nbytes = lambda state: sum(np.prod(s["shape"]) * np.dtype(s["dtype"]).itemsize for s in state)  # noqa: E731
    assert {s["dtype"] for s in f16["state"]} == {"float16"}
    assert nbytes(f16["state"]) * 2 == nbytes(manifest["state"])
    assert manifest["wasm"] is not None  # wasm keeps the f32 kernels
    # every kernel of both sets binds at most WebGPU's default 8 storage buffers, and every tensor
    # fits the binding limit: the tables are in parts, which the f16 set's plans bind too
    assert f16["requires"]["maxStorageBuffersPerShaderStage"] <= 8
    assert manifest["device"]["largest_binding"]["bytes"] <= SPLIT_AT
    inputs = {i["name"] for i in f16["entries"]["decode"]["inputs"]}
    assert {"model.embed_tokens.parts.1.qweight", "lm_head.parts.1.weight.qweight"} <= inputs


def test_f16_set_on_wgpu_matches_transformers_within_the_f16_bound(q4f16):
    artifact, refs, lists = q4f16
    result = deno_driver.run_forward(artifact, lists)
    assert result["adapter"]["shaderF16"] is True
    assert result["precision"] == "f16", result["precision_reason"]
    assert "has shader-f16" in result["precision_reason"]
    compare(result, refs, F16_BOUND)


def test_same_artifact_falls_back_to_f32_on_swiftshader(q4f16):
    artifact, refs, lists = q4f16
    result = browser.run_forward(artifact, lists)
    assert result["adapter"]["shaderF16"] is False
    assert result["precision"] == "f32"
    assert "lacks shader-f16" in result["precision_reason"]
    compare(result, refs, F32_BOUND)


def test_wasm_runs_the_f32_kernels_and_says_so(q4f16):
    artifact, refs, lists = q4f16
    result = deno_driver.run_forward(artifact, lists[:1], device="wasm", threads=1)
    assert result["precision"] == "f32" and "wasm kernels are f32" in result["precision_reason"]
    compare(result, refs[:1], F32_BOUND)


# Prefill (in chunks) then decode steps fed the reference's own next tokens, reading back each
# step's logits: the prefill/decode entries and the f16 KV cache, position by position.
TEACHER_FORCED_JS = """
async ([url, device, prompt, forced, chunk]) => {
  const model = await window.webrt.loadModel(url, { device });
  const gen = new window.webrt.Generator(model, { prefillChunk: chunk });
  const logits = [];
  const greedy = new window.webrt.Sampler({ temperature: 0 }, prompt);
  const recording = Object.create(greedy, {
    needsLogits: { value: true }, pick: { value: (token, row) => { logits.push(Array.from(row)); return token; } } });
  await gen.prefill(prompt, recording);
  for (const token of forced) await gen.decode(token, recording);
  const info = { precision: model.precision, logits };
  model.unload();
  return info;
}
"""


@pytest.mark.parametrize("runtime", ["deno", "chromium"])
def test_prefill_and_decode_through_the_kv_cache(q4f16, runtime):
    """f16 on wgpu, f32 on SwiftShader: logits after a prompt prefilled in chunks of 5 and after
    each of 8 decode steps, against the reference at the same positions."""
    artifact, _, _ = q4f16
    folder = artifact.parent / "hf"
    prompt = [5, 17, 300, 1000, 42, 7, 99, 1234, 2000, 3, 64, 1500]
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    rng = np.random.default_rng(2)
    forced = rng.integers(0, 2048, size=8).tolist()
    with torch.no_grad():
        for _, param in model.named_parameters():
            if param.ndim == 2:
                param.copy_(torch.from_numpy(quantize_q4(param.numpy()).dequantize()))
        ref = model(torch.tensor([prompt + forced])).logits[0].numpy()[len(prompt) - 1:]
    if runtime == "deno":
        with deno_driver.artifact_url(artifact) as url:
            result = deno_driver.run_script(TEACHER_FORCED_JS, [url, "webgpu", prompt, forced, 5])
    else:
        with browser.shell_page(artifact) as (page, url):
            result = browser.evaluate(page, TEACHER_FORCED_JS, [url, "webgpu", prompt, forced, 5])
    assert result["precision"] == ("f16" if runtime == "deno" else "f32")
    compare({"precision": result["precision"], "results": [{"logits": result["logits"]}]}, [ref],
            F16_BOUND if runtime == "deno" else F32_BOUND)


def test_precision_f32_runs_the_f32_set_on_an_f16_adapter(q4f16):
    artifact, refs, lists = q4f16
    result = deno_driver.run_forward(artifact, lists[:2], options={"precision": "f32"})
    assert result["adapter"]["shaderF16"] is True
    assert (result["precision"], result["precision_reason"]) == ("f32", "precision f32 was requested")
    compare(result, refs[:2], F32_BOUND)
    with pytest.raises(Exception, match='InputError: precision must be one of auto, f32, got "f8"'):
        deno_driver.run_forward(artifact, lists[:1], options={"precision": "f8"})
