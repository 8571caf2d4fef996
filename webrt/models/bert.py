"""The BERT family of encoders (BertModel, RoBERTa, XLM-RoBERTa) on tvm.relax.frontend.nn, with the
sentence embedding's pooling and normalization inside the graph.

Module and parameter names mirror Hugging Face's, so checkpoint tensors bind by name. The forward
reads top to bottom: word + position + token-type embeddings and a LayerNorm, then per layer
self-attention -> add & LayerNorm -> GELU MLP -> add & LayerNorm (post-LN), then pooling over the
tokens the attention mask keeps, then (optionally) L2 normalization. Batch and sequence length are
symbolic ("batch", "seq_len"): one artifact embeds any batch of right-padded sentences.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import te, tirx, topi
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import op

from ..errors import WebrtError

ENCODER_ARCHITECTURES = ("BertModel", "RobertaModel", "XLMRobertaModel")
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")

# The inputs of the embed entry that are not weights, in order.
EMBED_INPUTS = ["input_ids", "attention_mask"]


@dataclass
class EncoderConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    layer_norm_eps: float
    max_position_embeddings: int
    type_vocab_size: int
    # RoBERTa counts positions from pad_token_id + 1 (right padding: real tokens never see pads)
    position_offset: int
    pad_token_id: int
    # what the sentence embedding is: pooling over the kept tokens, then an optional L2 norm
    pooling: str = "mean"
    normalize: bool = False
    max_seq_length: int = 512
    family: str = "bert"  # the registry's name for the model code (webrt/models/registry.py)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_json(self) -> dict:
        return dict(self.__dict__)


def encoder_config(raw: dict, where: str) -> EncoderConfig:
    """The encoder part of a Hugging Face config.json (pooling is filled in by the importer)."""
    archs = raw.get("architectures") or []
    arch = archs[0] if archs else raw.get("model_type", "<none>")

    def need(key, kind=int):
        if key not in raw:
            raise WebrtError(f"{where}: missing key {key!r}, which {arch} needs")
        try:
            return kind(raw[key])
        except (TypeError, ValueError):
            raise WebrtError(f"{where}: {key!r} is {raw[key]!r}; expected a {kind.__name__}") from None

    if raw.get("hidden_act", "gelu") != "gelu":
        raise WebrtError(f"{where}: hidden_act {raw['hidden_act']!r} is not supported for {arch}; supported: gelu")
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise WebrtError(f"{where}: position_embedding_type {raw['position_embedding_type']!r} is not supported; "
                         "supported: absolute")
    hidden, heads = need("hidden_size"), need("num_attention_heads")
    if hidden % heads:
        raise WebrtError(f"{where}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    roberta = arch != "BertModel"
    pad = int(raw.get("pad_token_id") or (1 if roberta else 0))
    positions = need("max_position_embeddings")
    offset = pad + 1 if roberta else 0
    return EncoderConfig(
        architecture=arch, vocab_size=need("vocab_size"), hidden_size=hidden,
        intermediate_size=need("intermediate_size"), num_hidden_layers=need("num_hidden_layers"),
        num_attention_heads=heads, layer_norm_eps=need("layer_norm_eps", float),
        max_position_embeddings=positions, type_vocab_size=int(raw.get("type_vocab_size", 2)),
        position_offset=offset, pad_token_id=pad, max_seq_length=positions - offset)


def config_from_hf(reader) -> EncoderConfig:
    """The registry's entry point (a config.ConfigReader)."""
    return encoder_config(reader.raw, reader.where)


def embed_tokens(words: nn.Tensor, positions: nn.Tensor, types: nn.Tensor, ids: nn.Tensor, offset: int) -> nn.Tensor:
    """word[ids] + position[offset + s] + token_type[0]: one sentence per row, so every token has
    type 0. Callers validate ids against the vocabulary before they reach the kernel."""

    def compute(w: te.Tensor, p: te.Tensor, t: te.Tensor, ids: te.Tensor):
        return te.compute((*ids.shape, w.shape[1]),
                          lambda b, s, h: w[ids[b, s], h] + p[s + offset, h] + t[0, h], name="embed")

    return op.tensor_expr_op(compute, "bert_embed", [words, positions, types, ids])


def padding_mask(scores: nn.Tensor, mask: nn.Tensor, scale: float) -> nn.Tensor:
    """Scores [b, heads, q, k] scaled, with every key the mask [b, k] drops set to the lowest float."""

    def compute(s: te.Tensor, m: te.Tensor):
        lowest = tirx.min_value(s.dtype)
        return te.compute(s.shape, lambda b, h, i, j: tirx.if_then_else(
            m[b, j] != 0, s[b, h, i, j] * tirx.const(scale, s.dtype), lowest), name="padding_mask")

    return op.tensor_expr_op(compute, "padding_mask", [scores, mask])


def pool(x: nn.Tensor, mask: nn.Tensor, mode: str) -> nn.Tensor:
    """Hidden states [b, s, h] -> [b, h] over the tokens the mask keeps, as sentence-transformers'
    Pooling does: mean (sum / count, count at least 1e-9), cls (the first token), max (dropped
    tokens count as -1e9), mean_sqrt_len (sum / sqrt(count))."""

    def compute(x: te.Tensor, m: te.Tensor):
        b_, s_, h_ = x.shape
        if mode == "cls":
            return te.compute((b_, h_), lambda b, h: x[b, 0, h], name="pool_cls")
        s = te.reduce_axis((0, s_), name="s")
        kept = lambda b, i: m[b, i].astype("float32")  # noqa: E731
        if mode == "max":
            return te.compute((b_, h_), lambda b, h: te.max(tirx.if_then_else(
                m[b, s] != 0, x[b, s, h], tirx.const(-1e9, "float32")), axis=s), name="pool_max")
        total = te.compute((b_, h_), lambda b, h: te.sum(x[b, s, h] * kept(b, s), axis=s), name="pool_sum")
        c = te.reduce_axis((0, s_), name="c")
        count = te.compute((b_,), lambda b: te.sum(kept(b, c), axis=c), name="pool_count")
        denom = (lambda b: tirx.max(count[b], tirx.const(1e-9, "float32"))) if mode == "mean" else \
            (lambda b: tirx.sqrt(count[b]))
        return te.compute((b_, h_), lambda b, h: total[b, h] / denom(b), name="pool_mean")

    return op.tensor_expr_op(compute, f"pool_{mode}", [x, mask])


def l2_normalize(x: nn.Tensor) -> nn.Tensor:
    """x [b, h] / max(||x||, 1e-12), as torch.nn.functional.normalize (sentence-transformers' Normalize)."""

    def compute(x: te.Tensor):
        h = te.reduce_axis((0, x.shape[1]), name="h")
        norm = te.compute((x.shape[0],), lambda b: te.sum(x[b, h] * x[b, h], axis=h), name="sum_squares")
        return te.compute(x.shape, lambda b, i: x[b, i] / tirx.max(tirx.sqrt(norm[b]), tirx.const(1e-12, "float32")),
                          name="normalized")

    return op.tensor_expr_op(compute, "l2_normalize", [x])


class SelfAttention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim

    def forward(self, x: nn.Tensor, mask: nn.Tensor) -> nn.Tensor:
        b, s, _ = x.shape
        heads, hd = self.heads, self.head_dim
        # [b, heads, s, hd]
        q, k, v = (op.permute_dims(op.reshape(proj(x), (b, s, heads, hd)), (0, 2, 1, 3))
                   for proj in (self.query, self.key, self.value))
        # bidirectional: every token attends to every token the padding mask keeps
        scores = padding_mask(op.matmul(q, op.permute_dims(k, (0, 1, 3, 2))), mask, hd ** -0.5)
        out = op.matmul(op.softmax(scores, axis=-1), v)
        return op.reshape(op.permute_dims(out, (0, 2, 1, 3)), (b, s, heads * hd))


class AddNorm(nn.Module):
    """dense(x) + residual, then LayerNorm: BERT's `*.output` blocks (post-LN)."""

    def __init__(self, in_features: int, cfg: EncoderConfig):
        self.dense = nn.Linear(in_features, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: nn.Tensor, residual: nn.Tensor) -> nn.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        self.self = SelfAttention(cfg)
        self.output = AddNorm(cfg.hidden_size, cfg)

    def forward(self, x: nn.Tensor, mask: nn.Tensor) -> nn.Tensor:
        return self.output(self.self(x, mask), x)


class Intermediate(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: nn.Tensor) -> nn.Tensor:
        return erf_gelu(self.dense(x))


def erf_gelu(x: nn.Tensor) -> nn.Tensor:
    """The exact (erf) GELU of HF's "gelu", x/2 (1 + erf(x / sqrt 2)), with TVM's fast_erf (a
    rational approximation, ~1e-7 from erf in f32): op.gelu's erf is a scalar libm call per element
    on wasm, which took a third of the FFN's first matmul at 512 tokens."""
    def compute(t: te.Tensor) -> te.Tensor:
        erf = topi.fast_erf(topi.multiply(t, 0.7071067811865476))
        return topi.multiply(topi.multiply(t, 0.5), topi.add(erf, 1.0))
    return op.tensor_expr_op(compute, "gelu", [x])


class EncoderLayer(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = AddNorm(cfg.intermediate_size, cfg)

    def forward(self, x: nn.Tensor, mask: nn.Tensor) -> nn.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        self.layer = nn.ModuleList([EncoderLayer(cfg) for _ in range(cfg.num_hidden_layers)])


class Embeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.offset = cfg.position_offset

    def forward(self, input_ids: nn.Tensor) -> nn.Tensor:
        return self.LayerNorm(embed_tokens(self.word_embeddings.weight, self.position_embeddings.weight,
                                           self.token_type_embeddings.weight, input_ids, self.offset))


class BertEncoder(nn.Module):
    """BertModel / RobertaModel / XLMRobertaModel without the pooler head, plus the sentence pooling."""

    def __init__(self, cfg: EncoderConfig):
        if cfg.pooling not in POOLING_MODES:
            raise WebrtError(f"pooling {cfg.pooling!r} is not supported; supported: {', '.join(POOLING_MODES)}")
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)

    def embed(self, input_ids: nn.Tensor, attention_mask: nn.Tensor) -> nn.Tensor:
        """Sentence embeddings [batch, hidden] for right-padded token ids [batch, seq_len]; the mask
        is 1 for a token and 0 for padding."""
        x = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            x = layer(x, attention_mask)
        x = pool(x, attention_mask, self.cfg.pooling)
        return l2_normalize(x) if self.cfg.normalize else x

    def get_default_spec(self) -> nn.spec.ModuleSpec:
        mode = {"param_mode": "plain", "effect_mode": "none"}
        tokens = nn.spec.Tensor(["batch", "seq_len"], "int32")
        return nn.spec.ModuleSpec.from_raw({"embed": {"input_ids": tokens, "attention_mask": tokens, "$": mode}}, self)
