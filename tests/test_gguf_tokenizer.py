"""The GGUF tokenizer conversion (webrt/importers/gguf_tokenizer.py, `tokenizers` only) against
transformers' own GGUF conversion (which needs torch, so only the tests use it), on a corpus of
unicode, emoji, whitespace runs, code and special tokens."""

from __future__ import annotations

import json
import random
from pathlib import Path

import gguf
import pytest
from tokenizers import Tokenizer

from tests.models import default_gguf, gemma_gguf, minilm_folder
from webrt.errors import WebrtError
from webrt.importers.gguf_tokenizer import build_tokenizer, read_vocab, write_tokenizer_files

REPO = Path(__file__).resolve().parents[1]

EDGE_CASES = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n\n", " \n \n", "Hello world", " leading space", "trailing space ",
    "  two leading spaces", "a    b", "tabs\tand\tnewlines\n\nend", "\r\n windows \r\n", "\u00a0no-break\u00a0space",
    "émoji 🦙🔥 and 👩‍👩‍👧 (a ZWJ family) 🇫🇷 flags", "日本語のテキストと漢字", "Привет, мир!", "مرحبا بالعالم", "नमस्ते दुनिया",
    "한국어 문장입니다", "Ελληνικά", "ﬁ ligature, ẞ, Å vs Å", "combining e\u0301 accents", "zero\u200bwidth",
    "def f(x):\n    return x ** 2  # square\n", "    indented\n\tmixed\n", "if (a && b) { c++; } else {}",
    "x = [1, 2, 3]; y = {'k': \"v\"}", "<html><body>Hi</body></html>", "SELECT * FROM t WHERE id = 42;",
    "I'm sure we'll see they've gone, can't you?", "ALL CAPS SHOUTING", "camelCaseIdentifier snake_case_name",
    "123 4567 89012345 3.14159 -2e10 1,000,000", "https://example.com/path?query=a&b=c#frag", "user@example.com",
    "a" * 300, "ab " * 100, "!!!???...---", "$$$ %%% ^^^", "<unk>", "<s> </s>", "[CLS] [SEP] [MASK] [PAD]",
    "<think>hmm</think>", "<|endoftext|>", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n", "<|im_start|><|im_start|>", "text<|im_end|>text",
]


def corpus(vocab) -> list[str]:
    """Edge cases, real text and code from this repository, and seeded random mixtures with the
    vocabulary's own special tokens spliced in."""
    texts = list(EDGE_CASES)
    for path in ("README.md", "docs/ARTIFACT.md", "web/engine.js", "webrt/cli.py"):
        text = (REPO / path).read_text()
        texts += [line for line in text.splitlines() if line.strip()][:120]
        texts += [text[i:i + 700] for i in range(0, min(len(text), 7000), 700)]  # multi-line, with indents
    specials = [t for t, kind in zip(vocab.tokens, vocab.token_types or []) if kind == 3][:50]
    pieces = ["hello", " world", "  ", "\n", "\t", "🦙", "é", "日本", "Ж", "42", "(", ")", "{}", "_", "'s", "!",
              "\u200d", "\u0301", " \n ", "    "] + specials
    rng = random.Random(0)
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    texts += ["".join(chr(rng.choice([rng.randint(32, 0x2FF), rng.randint(0x400, 0x4FF), rng.randint(0x3040, 0x30FF),
                                      rng.randint(0x4E00, 0x4FFF), rng.randint(0x1F300, 0x1F6FF)]))
                      for _ in range(rng.randint(1, 30))) for _ in range(200)]
    return texts


def reader_meta(path: Path):
    reader = gguf.GGUFReader(str(path))

    def meta(key, default=None):
        field = reader.fields.get(key)
        return default if field is None else field.contents()
    return meta


def transformers_tokenizer(path: Path):
    from transformers import AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.mark.parametrize("which", ["smollm2", "gemma3"])
def test_gguf_tokenizer_encodes_like_transformers(which, tmp_path):
    path = default_gguf() if which == "smollm2" else gemma_gguf()
    vocab = read_vocab(reader_meta(path))
    files = {p.name: p for p in write_tokenizer_files(vocab, tmp_path)}
    ours = Tokenizer.from_file(str(files["tokenizer.json"]))
    reference = transformers_tokenizer(path)
    texts = corpus(vocab)
    differences = []
    for text in texts:
        for special in (False, True):
            expected = reference(text, add_special_tokens=special)["input_ids"]
            got = ours.encode(text, add_special_tokens=special).ids
            if got != expected:
                differences.append((text, special, got[:12], expected[:12]))
        ids = reference(text, add_special_tokens=False)["input_ids"]
        if ours.decode(ids, skip_special_tokens=False) != reference.decode(ids, skip_special_tokens=False,
                                                                           clean_up_tokenization_spaces=False):
            differences.append((text, "decode", None, None))
    assert not differences, f"{len(differences)} of {3 * len(texts)} encodings differ, e.g. {differences[:3]}"

    config = json.loads(files["tokenizer_config.json"].read_text())
    assert config["bos_token"] == reference.bos_token and config["eos_token"] == reference.eos_token
    template = files.get("chat_template.jinja")
    assert (template.read_text() if template else None) == reference.chat_template


def test_wordpiece_gguf_matches_the_original_tokenizer(tmp_path):
    """A BERT GGUF as llama.cpp's converter writes it (word starts spelled with a leading ▁, no ##
    on continuations) converts back to the checkpoint's own WordPiece tokenizer."""
    original = Tokenizer.from_file(str(minilm_folder() / "tokenizer.json"))
    original.no_truncation()
    original.no_padding()
    by_id = sorted(original.get_vocab().items(), key=lambda item: item[1])
    assert [i for _, i in by_id] == list(range(len(by_id)))

    def phantom(token: str) -> str:
        if token.startswith("[") and token.endswith("]"):
            return token
        return token[2:] if token.startswith("##") else "\u2581" + token

    writer = gguf.GGUFWriter(str(tmp_path / "bert.gguf"), "bert")
    writer.add_tokenizer_model("bert")
    writer.add_token_list([phantom(t) for t, _ in by_id])
    special = {added.content for added in original.get_added_tokens_decoder().values() if added.special}
    writer.add_token_types([3 if t in special else 1 for t, _ in by_id])  # as llama.cpp marks them
    vocab_ids = original.get_vocab()
    writer.add_bos_token_id(vocab_ids["[CLS]"])
    writer.add_sep_token_id(vocab_ids["[SEP]"])
    writer.add_unk_token_id(vocab_ids["[UNK]"])
    writer.add_pad_token_id(vocab_ids["[PAD]"])
    writer.add_mask_token_id(vocab_ids["[MASK]"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    vocab = read_vocab(reader_meta(tmp_path / "bert.gguf"))
    ours = build_tokenizer(vocab)
    texts = corpus(vocab)
    differences = [(t, s) for t in texts for s in (False, True)
                   if ours.encode(t, add_special_tokens=s).ids != original.encode(t, add_special_tokens=s).ids]
    assert not differences, f"{len(differences)} of {2 * len(texts)} encodings differ, e.g. {differences[:3]}"


def test_unknown_tokenizer_model_is_named():
    vocab = read_vocab(lambda key, default=None: {"general.architecture": "rwkv6", "tokenizer.ggml.model": "rwkv",
                                                   "tokenizer.ggml.tokens": ["a", "b"]}.get(key, default))
    with pytest.raises(WebrtError, match=r"tokenizer model 'rwkv' is not supported; supported: gpt2, llama, bert"):
        build_tokenizer(vocab)
