"""A GGUF file's embedded tokenizer, written out as Hugging Face tokenizer files with `tokenizers` alone.

A GGUF has no tokenizer.json: llama.cpp keeps the vocabulary under `tokenizer.ggml.*` (the model
type, the pre-tokenizer's name, tokens, scores, token types, merges, special ids and flags). Each
model type below rebuilds the tokenizer those keys describe, shaped as transformers' own GGUF
conversion shapes it (tests/test_gguf_tokenizer.py compares the two on a corpus), so the browser
loads the result exactly like a Hugging Face checkpoint's tokenizer. No torch, no transformers:
this runs on the main job's path.

- `gpt2`: byte-level BPE with the file's merges; `tokenizer.ggml.pre` names the split regex.
- `llama`: SentencePiece-style BPE with byte fallback and `▁` for spaces. The file has scores, not
  merges, so merges are rebuilt from the vocabulary. Gemma and Phi-3 need their own variants.
- `bert`: WordPiece. llama.cpp's converter spells word starts with a leading `▁` and drops the
  `##` of continuations ("phantom space"); that is undone here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from ..errors import WebrtError

SPACE = "\u2581"  # SentencePiece's visible space
TOKEN_CONTROL = 3        # llama.cpp's token types (gguf.TokenType): special tokens such as <|im_end|>
TOKEN_USER_DEFINED = 4   # added tokens that are matched whole but are not special, such as <think>

# Split regexes of byte-level vocabularies, by `tokenizer.ggml.pre`. A name not listed here (gpt2,
# default, smollm, starcoder, ...) uses GPT-2's own split, which ByteLevel applies by itself.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT4O_SPLIT = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_TEKKEN_SPLIT = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
                 r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
                 r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
BYTE_LEVEL_SPLITS = {
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "dbrx", "smaug-bpe"), _LLAMA3_SPLIT),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "megrez"), _QWEN2_SPLIT),
    **dict.fromkeys(("gpt-4o", "llama4"), _GPT4O_SPLIT),
    "tekken": _TEKKEN_SPLIT,
}


@dataclass
class GGUFVocab:
    """The `tokenizer.ggml.*` metadata of one file."""
    architecture: str
    model: str
    pre: str | None
    tokens: list[str]
    scores: list[float] | None
    token_types: list[int] | None
    merges: list[str] | None
    special_ids: dict[str, int]       # bos, eos, unk, pad, sep, cls, mask -> token id
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool | None
    chat_template: str | None

    def special(self, name: str) -> str | None:
        index = self.special_ids.get(name)
        return self.tokens[index] if index is not None and 0 <= index < len(self.tokens) else None


_SPECIAL_ID_KEYS = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id",
                    "pad": "padding_token_id", "sep": "seperator_token_id", "cls": "cls_token_id",
                    "mask": "mask_token_id"}  # llama.cpp spells "seperator" so


def read_vocab(meta) -> GGUFVocab:
    """The tokenizer metadata, through `meta(key, default)` over the file's fields."""
    model = meta("tokenizer.ggml.model")
    add_bos = meta("tokenizer.ggml.add_bos_token")
    return GGUFVocab(
        architecture=meta("general.architecture"),
        model=model,
        pre=meta("tokenizer.ggml.pre"),
        tokens=list(meta("tokenizer.ggml.tokens") or []),
        scores=meta("tokenizer.ggml.scores"),
        token_types=meta("tokenizer.ggml.token_type"),
        merges=meta("tokenizer.ggml.merges"),
        special_ids={name: meta(f"tokenizer.ggml.{key}") for name, key in _SPECIAL_ID_KEYS.items()
                     if meta(f"tokenizer.ggml.{key}") is not None},
        # llama.cpp adds BOS to a SentencePiece vocabulary whose file does not say otherwise
        add_bos=bool(add_bos) if add_bos is not None else model == "llama",
        add_eos=bool(meta("tokenizer.ggml.add_eos_token", False)),
        add_space_prefix=meta("tokenizer.ggml.add_space_prefix"),
        chat_template=meta("tokenizer.chat_template"),
    )


# --- gpt2: byte-level BPE -------------------------------------------------------------------------

def byte_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character map: printable Latin-1 bytes stand for themselves, the
    other 68 are moved to code points 256 and up, so every token is a plain string."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = (b for b in range(256) if b not in printable)
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + n) for n, b in enumerate(moved)}}


def _byte_level_bpe(vocab: GGUFVocab) -> Tokenizer:
    spelling = byte_alphabet()
    alphabet = set(spelling.values())
    # Some converters store tokens as raw text; spell those in the byte alphabet like the rest.
    ids = {(t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8"))): i
           for i, t in enumerate(vocab.tokens)}
    if not vocab.merges:
        raise WebrtError("the GGUF's gpt2 tokenizer has no tokenizer.ggml.merges")
    merges = [tuple(m.split(" ", 1)) for m in vocab.merges]
    tokenizer = Tokenizer(models.BPE(ids, merges, dropout=None, continuing_subword_prefix="",
                                     end_of_word_suffix="", fuse_unk=False))
    split = BYTE_LEVEL_SPLITS.get(vocab.pre or "")
    tokenizer.pre_tokenizer = (
        pre_tokenizers.ByteLevel(add_prefix_space=False) if split is None else pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]))
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


# --- llama: SentencePiece-style BPE --------------------------------------------------------------

def merges_from_vocab(tokens: list[str], priority: list[float]) -> list[tuple[str, str]]:
    """SentencePiece BPE ranks merges by the score of the piece they make; rebuild a BPE merge list
    from that. Every split of a token into two tokens of the vocabulary is a merge. Higher priority
    first; among equal ones, longer left then longer right pieces, then file order (ties within a
    token by the pieces' ids)."""
    ids = {t: i for i, t in enumerate(tokens)}   # a repeated token keeps its last id ...
    scores = {}
    for token, score in zip(tokens, priority):    # ... and its first place, with its last score
        scores[token] = score
    found = []
    for token, score in scores.items():
        pairs = [(token[:k], token[k:]) for k in range(1, len(token)) if token[:k] in ids and token[k:] in ids]
        pairs.sort(key=lambda pair: (ids[pair[0]], ids[pair[1]]))
        found.extend((score, left, right) for left, right in pairs)
    # One stable sort on a descending key keeps file order among exact ties.
    found.sort(key=lambda m: (m[0], len(m[1]), len(m[2])), reverse=True)
    return [(left, right) for _, left, right in found]


def _sentencepiece_bpe(vocab: GGUFVocab, tokens: list[str] | None = None, priority=None) -> Tokenizer:
    tokens = tokens or vocab.tokens
    if priority is None:
        if vocab.scores is None:
            raise WebrtError("the GGUF's llama tokenizer has no tokenizer.ggml.scores")
        priority = vocab.scores
    merges = ([tuple(m.split(" ", 1)) for m in vocab.merges] if vocab.merges
              else merges_from_vocab(tokens, priority))
    unk = vocab.special("unk") or "<unk>"
    tokenizer = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, dropout=None,
                                     unk_token=unk, fuse_unk=True, byte_fallback=True))
    prefix = vocab.add_space_prefix is not False
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="first" if prefix else "never",
                                                       split=False)
    tokenizer.decoder = _sentencepiece_decoder(strip_prefix=prefix)
    return tokenizer


def _sentencepiece_decoder(strip_prefix: bool):
    steps = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    return decoders.Sequence(steps + ([decoders.Strip(content=" ", left=1)] if strip_prefix else []))


def _gemma(vocab: GGUFVocab) -> Tokenizer:
    """Gemma's file stores tokens of blanks as real spaces, where the tokenizer looks them up as
    `▁▁`; and its scores do not follow its merge order, the order of the tokens in the
    file does. Spaces become `▁` in a normalizer, and no prefix space is added."""
    tokens = [SPACE * len(t) if " " in t and not t.strip() else t for t in vocab.tokens]
    tokenizer = _sentencepiece_bpe(vocab, tokens, priority=[-i for i in range(len(tokens))])
    tokenizer.normalizer = normalizers.Replace(" ", SPACE)
    tokenizer.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tokenizer.decoder = _sentencepiece_decoder(strip_prefix=False)
    return tokenizer


def _phi3(vocab: GGUFVocab) -> Tokenizer:
    """Phi-3 adds its prefix space in a normalizer, not with Metaspace: it shows on text that starts
    with a space ("  hi" -> ▁▁▁hi, where Metaspace gives ▁▁hi)."""
    tokenizer = _sentencepiece_bpe(vocab)
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    tokenizer.pre_tokenizer = None
    return tokenizer


# --- bert: WordPiece ------------------------------------------------------------------------------

def _wordpiece(vocab: GGUFVocab) -> Tokenizer:
    def unphantom(token: str) -> str:
        if token.startswith("[") and token.endswith("]"):
            return token
        return token[1:] if token.startswith(SPACE) else "##" + token

    ids = {}
    for i, token in enumerate(vocab.tokens):
        ids.setdefault(unphantom(token), i)
    unk = vocab.special("unk") or "[UNK]"
    tokenizer = Tokenizer(models.WordPiece(ids, unk_token=unk, max_input_chars_per_word=100))
    # llama.cpp's WordPiece tokenizer lowercases and strips accents: an uncased vocabulary
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


TOKENIZER_MODELS = {"gpt2": _byte_level_bpe, "llama": _sentencepiece_bpe, "bert": _wordpiece}
# SentencePiece variants that a file does not describe; chosen by its architecture
SENTENCEPIECE_VARIANTS = {"gemma": _gemma, "gemma2": _gemma, "gemma3": _gemma, "phi3": _phi3}


def build_tokenizer(vocab: GGUFVocab) -> Tokenizer:
    if vocab.model not in TOKENIZER_MODELS:
        raise WebrtError(f"the GGUF's tokenizer model {vocab.model!r} is not supported; "
                         f"supported: {', '.join(TOKENIZER_MODELS)}")
    if not vocab.tokens:
        raise WebrtError("the GGUF has no tokenizer.ggml.tokens")
    build = SENTENCEPIECE_VARIANTS.get(vocab.architecture) if vocab.model == "llama" else None
    tokenizer = (build or TOKENIZER_MODELS[vocab.model])(vocab)
    _add_special_tokens(tokenizer, vocab)
    tokenizer.post_processor = _post_processor(tokenizer, vocab)
    return tokenizer


def _add_special_tokens(tokenizer: Tokenizer, vocab: GGUFVocab) -> None:
    """Control tokens become special added tokens and user-defined ones plain added tokens, so both
    are matched whole in text instead of cut into pieces. In a byte-level vocabulary a control token
    spelled outside the byte alphabet is a converter's mislabel: adding it would grow the vocabulary
    past the model's embedding, so it is left out."""
    types = vocab.token_types or []
    alphabet = set(byte_alphabet().values()) if vocab.model == "gpt2" else None
    control = [t for t, kind in zip(vocab.tokens, types)
               if kind == TOKEN_CONTROL and (alphabet is None or set(t) <= alphabet)]
    if vocab.model == "bert":  # [CLS], [SEP], ...: llama.cpp marks them control too, but be sure
        control += [t for t in (vocab.special(n) for n in ("unk", "pad", "sep", "cls", "mask")) if t]
    if control:
        tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in dict.fromkeys(control)])
    known = tokenizer.get_vocab()
    user = [t for t, kind in zip(vocab.tokens, types) if kind == TOKEN_USER_DEFINED and t in known]
    if user:
        tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in user])


def _post_processor(tokenizer: Tokenizer, vocab: GGUFVocab):
    """BOS / EOS around a sequence as the file's flags say ([CLS] A [SEP] for WordPiece)."""
    if vocab.model == "bert":
        first, last = vocab.special("cls") or vocab.special("bos"), vocab.special("sep") or vocab.special("eos")
    else:
        first = vocab.special("bos") if vocab.add_bos else None
        last = vocab.special("eos") if vocab.add_eos else None
    ends = [t for t in (first, last) if t]
    pre, post = ([f"{first}:0"] if first else []), ([f"{last}:0"] if last else [])
    pair_pre, pair_post = ([f"{first}:1"] if first else []), ([f"{last}:1"] if last else [])
    return processors.TemplateProcessing(
        single=[*pre, "$A:0", *post], pair=[*pre, "$A:0", *post, *pair_pre, "$B:1", *pair_post],
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in dict.fromkeys(ends)])


def write_tokenizer_files(vocab: GGUFVocab, workdir: Path) -> list[Path]:
    """tokenizer.json, tokenizer_config.json (special tokens, add_bos/add_eos) and, when the file
    has one, chat_template.jinja: the files a Hugging Face checkpoint would carry."""
    tokenizer = build_tokenizer(vocab)
    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(workdir / "tokenizer.json"))
    names = {"bos": "bos_token", "eos": "eos_token", "unk": "unk_token", "pad": "pad_token",
             "sep": "sep_token", "cls": "cls_token", "mask": "mask_token"}
    config = {key: vocab.special(name) for name, key in names.items() if vocab.special(name)}
    config.update(add_bos_token=vocab.add_bos, add_eos_token=vocab.add_eos, clean_up_tokenization_spaces=False)
    (workdir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    if vocab.chat_template:
        (workdir / "chat_template.jinja").write_text(vocab.chat_template)
    return sorted(p for p in workdir.iterdir() if p.is_file())
