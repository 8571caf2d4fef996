"""GGUF (llama.cpp) names onto Hugging Face's: the metadata keys every decoder family shares, and
the per-layer tensor names of the LLaMA layout that the families extend."""

from __future__ import annotations

import numpy as np

# blk.N.<gguf> -> model.layers.N.<hf>
GGUF_LAYER_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
GGUF_GLOBAL_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                     "output.weight": "lm_head.weight"}


class GGUFMetadata:
    """The key/value fields and tensors of an open gguf.GGUFReader, looked up by name."""

    def __init__(self, reader, arch: str):
        self.reader, self.arch = reader, arch
        self.tensors = {t.name: t for t in reader.tensors}

    def get(self, key: str, default=None):
        """general.* / tokenizer.* keys as they are; others under the architecture's prefix."""
        f = self.reader.fields.get(key if key.split(".")[0] in ("general", "tokenizer") else f"{self.arch}.{key}")
        return default if f is None else f.contents()

    def tensor(self, name: str) -> np.ndarray | None:
        t = self.tensors.get(name)
        return None if t is None else np.asarray(t.data)


def gguf_metadata_to_hf(meta: GGUFMetadata, architecture: str, **extra) -> dict:
    """A config.json dict of `architecture` from the metadata keys the decoder families share."""
    heads = meta.get("attention.head_count")
    hidden = meta.get("embedding_length")
    head_dim = meta.get("attention.key_length") or meta.get("rope.dimension_count") or \
        (hidden // heads if heads and hidden else None)
    raw = {
        "architectures": [architecture],
        "vocab_size": meta.get("vocab_size", len(meta.get("tokenizer.ggml.tokens") or [])),
        "hidden_size": hidden,
        "intermediate_size": meta.get("feed_forward_length"),
        "num_hidden_layers": meta.get("block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": meta.get("attention.head_count_kv", heads),
        "head_dim": head_dim,
        "rms_norm_eps": meta.get("attention.layer_norm_rms_epsilon"),
        "max_position_embeddings": meta.get("context_length"),
        "rope_theta": meta.get("rope.freq_base", 10000.0),
        "tie_word_embeddings": "output.weight" not in meta.tensors,
    }
    scaling = meta.get("rope.scaling.type")
    if scaling == "linear":
        raw["rope_scaling"] = {"rope_type": "linear", "factor": meta.get("rope.scaling.factor")}
    elif scaling not in (None, "none"):
        raw["rope_scaling"] = {"rope_type": scaling}  # refused by name when the config is read
    raw.update(extra)
    return raw
