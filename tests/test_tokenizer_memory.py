"""The page's JS heap holds the tokenizer once: @huggingface/tokenizers keeps the parsed
tokenizer.json and the merge list beside the maps it builds from them, which the shell releases
(web/tokenizer.js), so the real Gemma 3 270M's 262,144 tokens no longer hold ~105 MiB more than
needed (bench/gemma3_wllama.md). Measured in Node with a forced GC, on the default model's
tokenizer (49,152 tokens, 48,900 merges), against the library on its own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.models import default_gguf
from webrt.importers.gguf_tokenizer import read_vocab, write_tokenizer_files
from tests.test_gguf_tokenizer import reader_meta

ROOT = Path(__file__).resolve().parent.parent

HEAP_MJS = """
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";
import { ChatTokenizer } from "./web/tokenizer.js";
const [dir, text] = JSON.parse(process.argv[1]);
const read = (f) => JSON.parse(readFileSync(`${dir}/${f}`, "utf8"));
const heap = () => { gc(); gc(); return process.memoryUsage().heapUsed; };
const base = heap();
const library = new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json"));
const withLibrary = heap();
const ours = new ChatTokenizer({ Tokenizer, Template: class {} }, read("tokenizer.json"), read("tokenizer_config.json"), null, {});
const withBoth = heap();
const ids = ours.encodePrompt(text);
console.log(JSON.stringify({ library: withLibrary - base, ours: withBoth - withLibrary,
  same: JSON.stringify(ids) === JSON.stringify(library.encode(text).ids), decoded: ours.decode(ids),
  reference: library.decode(library.encode(text).ids, { skip_special_tokens: true }) }));
"""


def test_the_chat_tokenizer_releases_the_parsed_tables(tmp_path):
    files = write_tokenizer_files(read_vocab(reader_meta(default_gguf())), tmp_path)
    assert {p.name for p in files} >= {"tokenizer.json", "tokenizer_config.json"}
    text = "The capital of France is Paris. Ünïcode 🙂 日本語 <|im_start|>user"
    out = subprocess.run(["node", "--expose-gc", "--input-type=module", "-e", HEAP_MJS, json.dumps([str(tmp_path), text])],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["same"] and r["decoded"] == r["reference"], r
    # the library alone also holds the parsed JSON and the merge list (about half of its heap here)
    assert r["ours"] <= 0.7 * r["library"], f"the chat tokenizer holds {r['ours']} bytes of JS heap, the library alone {r['library']}"
