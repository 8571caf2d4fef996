"""Embeddings: BERT / XLM-RoBERTa encoders compiled from sentence-transformers folders, through
engine.embeddings.create in headless Chromium (page and Worker, WebGPU and wasm with 1 and 2
threads), against sentence-transformers on the same folder; pooling variants; bad input.

The 50-sentence runs of the real model on every backend are bench/embeddings_parity.py."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.encoders import cosines, make_encoder_folder, minilm_folder, reference_embeddings, sentences
from webrt.browser import shell_page
from webrt.build_artifact import compile_model
from webrt.embed import run_embeddings

BACKENDS = [("webgpu", None), ("wasm", 1), ("wasm", 2)]
BACKEND_IDS = ["webgpu", "wasm-1thread", "wasm-2threads"]
TARGET = 0.9999

# own-token lengths: one word, short, and one past the random models' max_seq_length (128)
TEXTS = sentences([1, 9, 40, 150], seed=3)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_encoder_folder(tmp_path_factory.mktemp("enc") / "bert", "bert")


@pytest.fixture(scope="module")
def bert_artifact(bert_dir, tmp_path_factory):
    return compile_model(bert_dir, tmp_path_factory.mktemp("art") / "bert", tuning_candidates=False)


@pytest.fixture(scope="module")
def minilm_artifact(tmp_path_factory):
    return compile_model(minilm_folder(), tmp_path_factory.mktemp("art") / "minilm", tuning_candidates=False)


def embeddings_of(reply: dict) -> np.ndarray:
    assert "error" not in reply, reply
    assert [d["index"] for d in reply["data"]] == list(range(len(reply["data"])))
    return np.array([d["embedding"] for d in reply["data"]], dtype=np.float32)


def assert_matches(ours: np.ndarray, ref: np.ndarray):
    assert ours.shape == ref.shape
    cos = cosines(ours, ref)
    assert (cos >= TARGET).all(), f"cosines {cos}, max abs error {np.abs(ours - ref).max()}"
    assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.parametrize("device, threads", BACKENDS, ids=BACKEND_IDS)
def test_random_bert_matches_sentence_transformers(bert_dir, bert_artifact, device, threads):
    result = run_embeddings(bert_artifact, [{"input": TEXTS}, {"input": TEXTS[1]}], device, threads)
    assert result["info"]["device"] == device and result["info"]["threads"] == threads
    batched, single = result["replies"]
    ref = reference_embeddings(bert_dir, TEXTS)
    assert_matches(embeddings_of(batched), ref)
    # alone or in a padded batch: the same vector
    assert_matches(embeddings_of(single), ref[1:2])
    assert batched["object"] == "list" and batched["data"][0]["object"] == "embedding"
    # the 150-token text is cut at max_seq_length 128, special tokens included
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(bert_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    lengths = [len(tokenizer.encode(t).ids) for t in TEXTS]
    assert lengths[-1] > 128 and batched["usage"]["prompt_tokens"] == sum(min(n, 128) for n in lengths)


@pytest.mark.parametrize("device, threads", BACKENDS, ids=BACKEND_IDS)
def test_real_minilm_matches_sentence_transformers(minilm_artifact, device, threads):
    # SwiftShader runs the real model at about 0.1 GFLOP/s: short sentences there, a truncated one on wasm
    texts = ["A man is playing a guitar.", "The new movie is awesome!"]
    if device == "wasm":
        texts.append(sentences([300], seed=5)[0])
    result = run_embeddings(minilm_artifact, [{"input": texts}], device, threads)
    ours = embeddings_of(result["replies"][0])
    assert_matches(ours, reference_embeddings(minilm_folder(), texts))
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)  # 2_Normalize


@pytest.mark.parametrize("arch, options", [
    ("xlm-roberta", {"pooling": "cls", "normalize": False}),
    ("bert", {"pooling": "max"}),
    ("bert", {"pooling": "mean_sqrt_len", "normalize": False}),
    ("bert", {"sentence_transformers": False}),  # a plain folder: mean pooling, not normalized, with a note
], ids=["xlmr-cls", "bert-max", "bert-mean-sqrt-len", "plain-folder"])
def test_pooling_variants_match(tmp_path, arch, options):
    folder = make_encoder_folder(tmp_path / "enc", arch, **options)
    stages = []
    artifact = compile_model(folder, tmp_path / "art", stage=stages.append, tuning_candidates=False)
    manifest = json.loads((artifact / "manifest.json").read_text())
    if not options.get("sentence_transformers", True):
        from sentence_transformers import SentenceTransformer, models

        assert manifest["model"]["note"] and any("no modules.json" in s for s in stages)
        # sentence-transformers' own default for a plain folder: Transformer + mean Pooling
        word = models.Transformer(str(folder))
        ref = SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension(), "mean")],
                                  device="cpu").encode(TEXTS)
        assert manifest["model"]["config"]["max_seq_length"] == 160  # the position table
        texts = TEXTS[:3]  # the plain tokenizer keeps all 152 tokens; compare the shorter ones
        ref = ref[:3]
    else:
        texts, ref = TEXTS, reference_embeddings(folder, TEXTS)
        assert manifest["model"]["note"] is None
    assert manifest["model"]["config"]["pooling"] == options.get("pooling", "mean")
    result = run_embeddings(artifact, [{"input": texts}], "wasm", 1)
    assert_matches(embeddings_of(result["replies"][0]), ref)


def test_worker_chunks_and_dimensions(bert_dir, bert_artifact):
    """In a Worker, with batches of at most 2 sentences (three kernel runs for five inputs), and
    `dimensions` keeping the first values, normalized again."""
    texts = [*TEXTS, "one more"]
    options = {"device": "wasm", "threads": 2, "batchSize": 2}
    requests = [{"input": texts}, {"input": texts[:2], "dimensions": 16}]
    with shell_page(bert_artifact) as (page, url):
        from webrt.embed import _EMBED_JS

        result = page.evaluate(_EMBED_JS, [url, requests, options, True])
    assert "error" not in result, result
    full, short = result["replies"]
    ref = reference_embeddings(bert_dir, texts)
    assert_matches(embeddings_of(full), ref)
    assert full["usage"]["extra"]["batches"] == 3
    cut = ref[:2, :16] / np.linalg.norm(ref[:2, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(embeddings_of(short), cut, atol=1e-5)
    assert result["info"]["task"] == "embedding" and result["info"]["threads"] == 2


BAD_JS = """
async ([url]) => {
  const engine = await window.webrt.createEngine(url, { device: "wasm", threads: 1 });
  const requests = [{}, { input: "" }, { input: [] }, { input: ["ok", 7] }, { input: ["ok", ""] },
                    { input: Array(2049).fill("x") }, { input: "ok", dimensions: 0 },
                    { input: "ok", dimensions: 65 }, { input: "ok", encoding_format: "base64" }];
  const out = [];
  for (const request of requests) {
    try {
      await engine.embeddings.create(request);
      out.push("no error");
    } catch (err) {
      out.push(`${err.name}: ${err.message}`);
    }
  }
  try {
    await engine.chat.completions.create({ messages: [{ role: "user", content: "hi" }] });
    out.push("no error");
  } catch (err) {
    out.push(`${err.name}: ${err.message}`);
  }
  engine.unload();
  return out;
}
"""


def test_bad_requests_are_named_errors(bert_artifact):
    with shell_page(bert_artifact) as (page, url):
        errors = page.evaluate(BAD_JS, [url])
    expected = ["InputError: input must be a non-empty string", "InputError: input[0] is an empty string",
                "InputError: input must be a non-empty string", "InputError: input[1] is number",
                "InputError: input[1] is an empty string", "InputError: input holds 2049 strings; at most 2048",
                "InputError: dimensions must be an integer in [1, 64], got 0",
                "InputError: dimensions must be an integer in [1, 64], got 65",
                'InputError: encoding_format "base64" is not supported',
                "EngineStateError: bert is an embedding model: use engine.embeddings.create"]
    assert len(errors) == len(expected)
    for got, want in zip(errors, expected):
        assert got.startswith(want), (got, want)


def webrt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webrt.cli", *args], capture_output=True, text=True, timeout=600)


def test_cli_embed(bert_dir, bert_artifact):
    result = webrt("embed", str(bert_artifact), "--input", TEXTS[1], "--input", TEXTS[2], "--json", "--threads", "1")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert_matches(embeddings_of(reply), reference_embeddings(bert_dir, TEXTS[1:3]))
    text = webrt("embed", str(bert_artifact), "--input", "a cat", "--input", "a dog", "--threads", "1")
    assert text.returncode == 0 and "cosine(1, 2) = " in text.stdout, text.stderr


@pytest.mark.parametrize("args, message", [
    (["--input", "  "], "--input number 1 is empty"),
    (["--input", "x", "--dimensions", "65"], "--dimensions 65 is outside [1, 64]"),
    (["--input", "x", "--device", "webgpu", "--threads", "2"], "--threads 2 sets wasm threads"),
    ([], "Missing option '--input'"),
])
def test_cli_embed_bad_input(bert_artifact, args, message):
    result = webrt("embed", str(bert_artifact), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize("change, message", [
    (lambda f: (f / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_lasttoken": True})),
     "pooling ['pooling_mode_lasttoken'] is not supported"),
    (lambda f: (f / "config.json").write_text(json.dumps({**json.loads((f / "config.json").read_text()),
                                                            "hidden_act": "relu"})),
     "hidden_act 'relu' is not supported for BertModel"),
    (lambda f: (f / "tokenizer.json").unlink(), "has no tokenizer.json"),
], ids=["pooling", "activation", "tokenizer"])
def test_compile_refuses_unsupported_encoders(bert_dir, tmp_path, change, message):
    import shutil

    folder = tmp_path / "enc"
    shutil.copytree(bert_dir, folder)
    change(folder)
    result = webrt("compile", str(folder), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_compile_refuses_quantized_encoder(bert_dir, tmp_path):
    result = webrt("compile", str(bert_dir), "-o", str(tmp_path / "out"), "--quantization", "q4f32")
    assert result.returncode == 2 and "use --quantization f32" in result.stderr, result.stderr


def test_search_page_ranks_the_expected_document(minilm_artifact, tmp_path):
    """build-site with the real all-MiniLM adds search.html: it embeds the bundled documents in a
    Worker and answers a query with the right one first."""
    from tests.serving import build_site, webrt_serve
    from webrt.browser import chromium_context

    site = build_site([minilm_artifact], tmp_path / "site")
    index = json.loads((site / "site.json").read_text())
    assert index["search"] == {"page": "search.html"} and index["models"][0]["task"] == "embedding"
    with webrt_serve(site) as url, chromium_context() as context:
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(f"{url}search.html?device=wasm")
        # the page's CSP forbids string evaluation: wait on selectors
        page.wait_for_selector('body[data-state="ready"], body[data-state="error"]', state="attached", timeout=240_000)
        assert page.get_attribute("body", "data-state") == "ready", page.text_content("#status")
        for query, expected in [("Which city is the capital of France?", "Paris is the capital"),
                                ("How do plants make sugar from light?", "Photosynthesis")]:
            page.fill("#query", query)
            page.click("#go")
            page.wait_for_selector('body[data-state="ready"] #results li', timeout=60_000)
            top = page.text_content("#results li")
            assert expected in top, (query, top)
            page.fill("#query", "")
            page.locator("#results").evaluate("(list) => list.replaceChildren()")
        assert not errors, errors


_SHARED_DEVICE_JS = """
async ([base, texts]) => {
  const options = { device: "webgpu", shareDevice: true };
  const chat = await window.webrt.createEngine(base + "chat/", options);
  const embedder = await window.webrt.createEngine(base + "embedder/", options);
  const ask = () => chat.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 4, temperature: 0 });
  const out = { shared: chat.model.sharedDevice && embedder.model.sharedDevice,
                sameDevice: chat.model.adapter === embedder.model.adapter };
  const before = await ask();
  const vectors = await embedder.embeddings.create({ input: texts });
  const model = embedder.model;
  out.bytes = { chat: chat.model.gpuBytes, embedder: model.gpuBytes };
  embedder.unload();
  out.after = { chat: chat.model.gpuBytes, embedder: model.gpuBytes };
  const again = await ask();  // the shared device lives on for the chat model
  out.sameReply = JSON.stringify(again.usage.extra.token_ids) === JSON.stringify(before.usage.extra.token_ids);
  out.embedded = vectors.data.length;
  const chatModel = chat.model;
  const adapter = chatModel.adapter;
  await chat.unload();
  out.chatAfter = chatModel.gpuBytes;
  // the last model's unload freed the device: the next shared one is new
  const next = await window.webrt.createEngine(base + "chat/", options);
  out.newDevice = next.model.adapter !== adapter;
  await next.unload();
  return out;
}
"""


def test_two_models_share_one_webgpu_device_each_with_its_own_memory(tiny_chat_artifact, bert_artifact, tmp_path):
    """A chat model and an embedder loaded with shareDevice run on one WebGPU device; each counts
    its own buffers, unloading the embedder frees all of its memory and leaves the chat model's
    (which still answers the same), and unloading the last one frees the device."""
    (tmp_path / "chat").symlink_to(tiny_chat_artifact)
    (tmp_path / "embedder").symlink_to(bert_artifact)
    with shell_page(tmp_path) as (page, url):
        out = page.evaluate(_SHARED_DEVICE_JS, [url, TEXTS[:2]])
    assert out["shared"] and out["sameDevice"], out
    assert out["bytes"]["chat"] > 0 and out["bytes"]["embedder"] > 0, out
    assert out["after"] == {"chat": out["bytes"]["chat"], "embedder": 0}, out
    assert out["sameReply"] and out["embedded"] == 2, out
    assert out["chatAfter"] == 0 and out["newDevice"], out
