"""Python in the browser: the site's Python page (`webrt build-site --python`) runs webrt_web in
Pyodide, served from the site only, and drives the default model in a Worker, in headless Chromium:
the preloaded streaming example, interrupt mid-stream and ask again, a bad request that raises
the engine's own error in Python, and embeddings (a small random encoder) equal to the JS engine's."""

from __future__ import annotations

import ast
import json
import sys
import zipfile
from pathlib import Path

import pytest

from tests.serving import webrt, webrt_serve
from tests.test_demo_page import QUESTION, NetworkLog
from webrt.browser import chromium_context
from webrt.build_artifact import compile_model
from webrt.python_demo import PythonPage

STORY = "Write a long story about a cat who learns to fly."


@pytest.fixture(scope="module")
def python_site(default_artifact, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pyodide") / "site"
    result = webrt("build-site", str(default_artifact), "-o", str(out), "--python")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def site_url(python_site) -> str:
    with webrt_serve(python_site) as url:
        yield url


@pytest.fixture(scope="module")
def python_page(site_url):
    """One Python page for the tests that run their own code (each run has a fresh namespace)."""
    with chromium_context() as context:
        page = PythonPage(context.new_page())
        page.open(site_url)
        yield page


def model_path(site: Path) -> str:
    return json.loads((site / "site.json").read_text())["models"][0]["path"]


def run_json(page: PythonPage, code: str) -> list[dict]:
    """Run code that prints one JSON object per line; returns them (the output if it raised)."""
    run = page.run(code)
    try:
        return [json.loads(line) for line in run.output.splitlines() if line.strip()]
    except ValueError:
        raise AssertionError(f"the code did not print JSON lines: {run.output}") from None


def test_wheel_is_pure_python_and_pulls_nothing(python_site):
    index = json.loads((python_site / "site.json").read_text())
    python = index["python"]
    assert python["wheel"].endswith("-py3-none-any.whl") and python["pyodide"] == "314.0.7"
    wheel = zipfile.ZipFile(python_site / python["path"] / python["wheel"])
    names = wheel.namelist()
    assert {n.split("/")[0] for n in names} == {"webrt_web", "webrt_web-0.1.0.dist-info"}, names
    metadata = wheel.read("webrt_web-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist" not in metadata, metadata  # no numpy, no TVM, no webrt
    imported = set()  # what its modules import: the standard library and Pyodide's FFI, nothing else
    for name in (n for n in names if n.endswith(".py")):
        for node in ast.walk(ast.parse(wheel.read(name))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"js", "pyodide"}, imported


def test_python_page_streams_the_preloaded_example_offline(python_site, site_url):
    with chromium_context() as context:
        network = NetworkLog(context)
        page = PythonPage(context.new_page())
        code = page.open(site_url)
        run = page.run()  # the preloaded example, as it is
    assert "stream=True" in code and QUESTION in code and model_path(python_site) in code
    assert "Paris" in run.output, run
    assert run.status.startswith("Done in"), run.status
    partial = [t for t in run.partial_outputs if t and t != run.output]
    assert partial and all(run.output.startswith(t) for t in run.partial_outputs), run.partial_outputs
    # Pyodide, the wheel, the shell and the model all came from the site: no CDN, nothing else
    assert all(url.startswith(site_url) for url in network.urls), network.urls
    assert any(url.endswith("pyodide.asm.wasm") for url in network.urls)
    assert any(url.endswith("-py3-none-any.whl") for url in network.urls)
    assert not page.errors, page.errors


def test_python_streams_interrupts_mid_stream_then_asks_again(python_page, python_site):
    story, again, reference = run_json(python_page, f"""
import json
from webrt_web import create_engine

stages = []
engine = await create_engine({model_path(python_site)!r}, on_progress=lambda p: stages.append(p["stage"]))
story = {{"role": "user", "content": {STORY!r}}}
text, finish, usage, chunks = "", None, None, 0
async for chunk in await engine.chat.completions.create(messages=[story], stream=True, temperature=0, max_tokens=200):
    text += chunk["choices"][0]["delta"].get("content") or ""
    finish = chunk["choices"][0]["finish_reason"] or finish
    usage = chunk.get("usage") or usage
    chunks += 1
    if chunks == 6:
        await engine.interrupt()
print(json.dumps({{"text": text, "finish": finish, "tokens": usage["completion_tokens"], "stages": stages}}))

text = ""
question = {{"role": "user", "content": {QUESTION!r}}}
async for chunk in await engine.chat.completions.create(messages=[question], stream=True, temperature=0, max_tokens=32):
    text += chunk["choices"][0]["delta"].get("content") or ""
print(json.dumps({{"text": text}}))

# the story again from a clean cache, as many tokens as the interrupted one had, not streamed
await engine.reset_chat()
reply = await engine.chat.completions.create(messages=[story], temperature=0, max_tokens=usage["completion_tokens"])
print(json.dumps({{"text": reply["choices"][0]["message"]["content"], "finish": reply["choices"][0]["finish_reason"]}}))
""")
    # stopped after the token in flight: far short of 200, and what it gave is the story's start
    assert story["finish"] == "abort" and 4 <= story["tokens"] <= 12, story
    assert story["text"] and story["text"] == reference["text"], (story, reference)
    assert reference["finish"] == "length", reference
    assert "Paris" in again["text"], again
    # on_progress saw the load as dicts, from its first stage to ready (on wasm the kernels are
    # instantiated before the shards download, each copied into wasm memory as it arrives)
    assert story["stages"][0] in ("download", "pipelines") and story["stages"][-1] == "ready", story["stages"]
    assert {"download", "pipelines"} <= set(story["stages"]), story["stages"]


def test_bad_request_raises_the_engines_error_in_python_and_the_engine_stays_usable(python_page, python_site):
    url = model_path(python_site)
    caught, after = run_json(python_page, f"""
import json
from webrt_web import InputError, WebrtError, create_engine

engine = await create_engine({url!r})
question = [{{"role": "user", "content": {QUESTION!r}}}]
try:
    await engine.chat.completions.create(messages=question, max_tokens=0)
except InputError as err:
    print(json.dumps({{"type": type(err).__name__, "message": str(err), "webrt": isinstance(err, WebrtError)}}))
reply = await engine.chat.completions.create(messages=question, temperature=0, max_tokens=32)
print(json.dumps({{"text": reply["choices"][0]["message"]["content"]}}))
""")
    # the same request from JS, to the same kind of worker engine on the same page
    js = python_page.page.evaluate("""async (url) => {
      const app = document.querySelector('script[type=module]').src.replace(/demo\\/python\\.js$/, "");
      const { createWorkerEngine } = await import(app + "worker_engine.js");
      const engine = await createWorkerEngine(new Worker(app + "worker.js", { type: "module" }), url);
      try {
        await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 0 });
        return null;
      } catch (err) { return { name: err.name, message: err.message }; } finally { await engine.unload(); }
    }""", url)
    assert js == {"name": "InputError", "message": "max_tokens must be a positive integer, got 0"}, js
    assert caught == {"type": js["name"], "message": js["message"], "webrt": True}, caught
    assert "Paris" in after["text"], after
    # uncaught, it ends the run with a Python traceback that names it
    run = python_page.run(f"""
from webrt_web import create_engine
engine = await create_engine({url!r})
await engine.completions.create(prompt="The capital of France is", max_tokens=0)
""")
    assert run.output.rstrip().endswith("webrt_web.errors.InputError: max_tokens must be a positive integer, got 0"), run.output
    assert run.status == "The code raised an error (shown below)."


def test_embeddings_from_python_are_the_js_engines(python_page, tmp_path):
    from tests.encoders import make_encoder_folder

    encoder = compile_model(make_encoder_folder(tmp_path / "bert"), tmp_path / "bert-art", tuning_candidates=False)
    site = tmp_path / "site"
    result = webrt("build-site", str(encoder), "-o", str(site), "--python")
    assert result.returncode == 0, result.stderr
    texts = ["A cat sat on the mat.", "Paris is the capital of France, and a city of bridges."]
    with webrt_serve(site) as url:
        page = PythonPage(python_page.page.context.new_page())  # one Playwright per thread: its browser
        page.open(url)
        (python,) = run_json(page, f"""
import json
from webrt_web import create_engine
engine = await create_engine({model_path(site)!r})
print(json.dumps(await engine.embeddings.create(input={texts!r})))
""")
        js = page.page.evaluate("""async ([url, input]) => {
          const app = document.querySelector('script[type=module]').src.replace(/demo\\/python\\.js$/, "");
          const { createWorkerEngine } = await import(app + "worker_engine.js");
          const worker = new Worker(app + "worker.js", { type: "module" });
          const engine = await createWorkerEngine(worker, url, { device: "auto" });  // as create_engine's default
          const reply = await engine.embeddings.create({ input });
          await engine.unload();
          return { ...reply, data: reply.data.map((d) => ({ ...d, embedding: Array.from(d.embedding) })) };
        }""", [model_path(site), texts])
    assert [len(d["embedding"]) for d in python["data"]] == [64, 64], python
    assert all(isinstance(x, float) for d in python["data"] for x in d["embedding"])
    # the same numbers, exactly: the bridge converts, it does not round
    assert python["data"] == js["data"] and python["usage"]["prompt_tokens"] == js["usage"]["prompt_tokens"]


def test_python_output_is_shown_as_text_and_runs_nothing(python_page):
    evil = '<img src=x onerror="window.pwned = 1"><script>window.pwned = 2</script><b>bold</b> & done'
    run = python_page.run(f"print({evil!r}, end='')\nimport asyncio\nawait asyncio.sleep(0.3)")
    shown = python_page.page.evaluate("""() => ({
      elements: document.querySelectorAll("#output img, #output script, #output b").length,
      pwned: window.pwned ?? null })""")
    assert run.output == evil, run.output
    assert shown == {"elements": 0, "pwned": None}
