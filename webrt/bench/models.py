"""The benchmark's models: random-weight LLaMAs built with transformers (seeded), each saved as a
Hugging Face folder and exported to ONNX with a KV cache for the peers.

The ONNX layout is the one transformers.js reads: `config.json`, `generation_config.json` and
`onnx/model.onnx`, with inputs `input_ids`, `attention_mask`, `position_ids`,
`past_key_values.<layer>.key|value` [batch, kv_heads, past, head_dim] and outputs `logits`,
`present.<layer>.key|value` [batch, kv_heads, past + seq, head_dim]. onnxruntime-web runs the same file.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import WebrtError


@dataclass(frozen=True)
class ModelSpec:
    """One benchmark model. `hidden` None means the default model (a GGUF file, not random)."""

    name: str
    hidden: int | None = None
    layers: int = 0
    heads: int = 0
    kv_heads: int = 0
    intermediate: int = 0
    vocab: int = 2048
    context: int = 512
    quantization: str = "f32"
    # Larger-than-default init spreads the logits, so greedy choices are far from ties and the
    # engines' float rounding cannot flip them.
    init_range: float = 0.1
    seed: int = 0

    @property
    def random(self) -> bool:
        return self.hidden is not None

    def describe(self) -> str:
        if not self.random:
            return f"{self.name} (default model, {self.quantization}, context {self.context})"
        return (f"random LLaMA hidden {self.hidden}, {self.layers} layers, {self.heads} heads / "
                f"{self.kv_heads} KV heads, intermediate {self.intermediate}, vocab {self.vocab}, "
                f"{self.quantization}, context {self.context}")


# hidden 768 / 12 layers with untied embeddings is the 88M model of ../shared/NOTES.md's peer table
STANDARD = {
    "llama-h256-l4": ModelSpec("llama-h256-l4", hidden=256, layers=4, heads=4, kv_heads=4, intermediate=688),
    "llama-h768-l12": ModelSpec("llama-h768-l12", hidden=768, layers=12, heads=12, kv_heads=12, intermediate=2048),
    "smollm2-q4f32": ModelSpec("smollm2-q4f32", quantization="q4f32", context=512),
}
# A model small enough for a test that runs every engine
TINY = ModelSpec("llama-h64-l2", hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=512, context=128)


def parse_models(text: str) -> list[ModelSpec]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = {**STANDARD, TINY.name: TINY}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise WebrtError(f"--models {text!r}: unknown model {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(known)}")
    return [known[n] for n in names]


def build_hf_model(spec: ModelSpec, folder: Path) -> Path:
    """Save the seeded random-weight LLaMA of `spec` as a Hugging Face folder."""
    import torch
    import transformers

    config = transformers.LlamaConfig(
        hidden_size=spec.hidden, intermediate_size=spec.intermediate, num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads, vocab_size=spec.vocab,
        max_position_embeddings=spec.context, initializer_range=spec.init_range, tie_word_embeddings=False,
        # no end-of-sequence token: every engine decodes exactly the tokens asked for
        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    transformers.logging.disable_progress_bar()
    torch.manual_seed(spec.seed)
    model = transformers.LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = None
    model.save_pretrained(folder)
    (folder / "webrt_bench_model.json").write_text(json.dumps(asdict(spec), indent=1) + "\n")
    return folder


class _WithFlatCache:
    """Wraps LlamaForCausalLM so that the KV cache is a flat list of tensors (ONNX inputs/outputs)."""

    def __new__(cls, model):
        import torch
        from transformers import DynamicCache

        layers = model.config.num_hidden_layers

        class WithFlatCache(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, position_ids, *past):
                cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(layers)],
                                     config=model.config)
                out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                 past_key_values=cache, use_cache=True)
                present = []
                for i in range(layers):
                    layer = out.past_key_values.layers[i]
                    present += [layer.keys, layer.values]
                return (out.logits, *present)

        return WithFlatCache()


def export_onnx(folder: Path, opset: int = 18) -> Path:
    """Export the Hugging Face model in `folder` to `folder/onnx/model.onnx` (one file, f32)."""
    import torch
    import transformers

    model = transformers.LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32,
                                                          attn_implementation="eager").eval()
    config = model.config
    layers, kv_heads = config.num_hidden_layers, config.num_key_value_heads
    head_dim = config.hidden_size // config.num_attention_heads
    past_len, seq = 5, 3  # example sizes; both dimensions are dynamic in the export
    past = []
    names_in = ["input_ids", "attention_mask", "position_ids"]
    names_out = ["logits"]
    for i in range(layers):
        for kind in ("key", "value"):
            past.append(torch.randn(1, kv_heads, past_len, head_dim))
            names_in.append(f"past_key_values.{i}.{kind}")
            names_out.append(f"present.{i}.{kind}")
    args = (torch.randint(0, config.vocab_size, (1, seq)), torch.ones(1, past_len + seq, dtype=torch.int64),
            torch.arange(past_len, past_len + seq).unsqueeze(0), *past)
    batch, sequence, total, past_dim = "batch_size", "sequence_length", "total_sequence_length", "past_sequence_length"
    dynamic = {"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: total},
               "position_ids": {0: batch, 1: sequence}, "logits": {0: batch, 1: sequence}}
    for i in range(layers):
        for kind in ("key", "value"):
            dynamic[f"past_key_values.{i}.{kind}"] = {0: batch, 2: past_dim}
            dynamic[f"present.{i}.{kind}"] = {0: batch, 2: total}
    out = folder / "onnx" / "model.onnx"
    out.parent.mkdir(exist_ok=True)
    # the tracer warns about Python-level branches in transformers' cache and mask code; the
    # exported graph is checked against transformers by tests/test_bench.py
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_WithFlatCache(model), args, str(out), input_names=names_in, output_names=names_out,
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False, do_constant_folding=True)
    # transformers.js reads the model type and cache geometry from config.json (written by save_pretrained)
    return out


def prepare_random_model(spec: ModelSpec, folder: Path) -> Path:
    """The HF folder with its ONNX export, reused when a previous run built the same spec."""
    marker = folder / "webrt_bench_model.json"
    if marker.exists() and json.loads(marker.read_text()) == asdict(spec) and (folder / "onnx" / "model.onnx").exists():
        return folder
    build_hf_model(spec, folder)
    export_onnx(folder)
    return folder
