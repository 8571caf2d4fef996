"""The chat page of a built site, in headless Chromium as a visitor uses it: served by `webrt serve`
on WebGPU and on wasm, reloaded from the Cache API, from a sub-path of a plain static host, with a
corrupt shard, a model that will not fit, a resumed download, markup in a reply (inert), a Markdown reply
(rendered, with a screenshot of its code block), and `webrt demo --check`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.serving import build_site, plain_static_server, webrt, webrt_serve
from webrt.browser import chromium_context
from webrt.demo import ChatPage

QUESTION = "What is the capital of France?"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def demo_site(default_artifact, tiny_chat_artifact, tmp_path_factory) -> Path:
    return build_site([default_artifact, tiny_chat_artifact], tmp_path_factory.mktemp("demo") / "site")


@pytest.fixture(scope="module")
def demo_url(demo_site) -> str:
    with webrt_serve(demo_site) as url:
        yield url


def site_index(site: Path) -> dict:
    return json.loads((site / "site.json").read_text())


class NetworkLog:
    """Every request the browser context makes (the page's and its Worker's), and the weight bytes
    the network delivered."""

    def __init__(self, context):
        self.urls: list[str] = []
        self.weights: dict[str, int] = {}
        self.ranges: list[tuple[str, str | None, int, int]] = []  # url, Range asked, status, length
        context.on("request", lambda r: self.urls.append(r.url))
        context.on("response", self.on_response)

    def on_response(self, response):
        if "/weights/" in response.url:
            length = int(response.headers.get("content-length", 0))
            self.weights[response.url] = self.weights.get(response.url, 0) + length
            self.ranges.append((response.url, response.request.headers.get("range"), response.status, length))

    def clear(self):
        self.urls.clear()
        self.weights.clear()
        self.ranges.clear()


def assert_streamed(reply) -> None:
    """The reply grew on screen in steps before it was complete."""
    partial = [t for t in reply.partial_texts if t and t != reply.text]
    assert partial, reply.partial_texts
    assert all(reply.text.startswith(t) for t in reply.partial_texts), reply.partial_texts


# SwiftShader WebGPU prefills under 1 token/s: a short system prompt (24 prompt tokens instead of the
# template's default 37) keeps that run near a minute, and exercises the setting
@pytest.mark.parametrize("device, max_tokens, system", [("webgpu", 10, "Be brief."), ("wasm", 16, None)])
def test_page_served_by_webrt_serve_answers_paris(demo_site, demo_url, device, max_tokens, system):
    default = site_index(demo_site)["models"][0]
    shards = json.loads((demo_site / default["path"] / "manifest.json").read_text())["weights"]["shards"]
    SCREENSHOTS.mkdir(exist_ok=True)
    with chromium_context() as context:
        network = NetworkLog(context)
        page = context.new_page()
        chat = ChatPage(page)
        chat.open(demo_url, device, default["path"])
        chat.settings(max_tokens=max_tokens, system=system)
        backend = chat.load()
        reply = chat.ask(QUESTION)
        page.screenshot(path=SCREENSHOTS / f"demo-{device}.png", full_page=True)
        assert "Paris" in reply.text, reply
        assert_streamed(reply)
        assert re.search(r"first token [\d.]+ s · [\d.]+ tok/s", reply.stats), reply.stats
        if device == "webgpu":
            assert backend.startswith("WebGPU on google swiftshader (a software renderer). Why: requested"), backend
        else:
            cores = page.evaluate("navigator.hardwareConcurrency")
            threads = f"{cores} threads (one per core)" if cores > 1 else "1 thread (1 core)"
            # Chromium validates relaxed SIMD, so the relaxed builds run (wasm_backend.js chooseWasmBuild)
            assert backend.startswith(f"WebAssembly (wasm), {threads}, relaxed SIMD. Why: requested."), backend
        assert page.evaluate("crossOriginIsolated") is True  # webrt serve's COOP/COEP headers
        # the first load downloaded every shard, whole; nothing came from anywhere but the site
        assert network.weights == {f"{demo_url}{default['path']}{s['file']}": s["bytes"] for s in shards}
        assert all(url.startswith(demo_url) for url in network.urls), network.urls
        if device != "wasm":
            return
        # a reload takes the weights from the Cache API: 0 bytes of them from the network
        network.clear()
        page.reload()
        chat.wait_for_state("idle")
        assert "already cached" in chat.text("#fit")
        chat.load()
        assert network.weights == {} and not any("/weights/" in u for u in network.urls), network.weights
        # Stop ends a long reply early; New chat clears the conversation; the next answer is the same
        chat.settings(max_tokens=200)
        page.fill("#prompt", "Write a long story about a cat who learns to fly.")
        page.press("#prompt", "Enter")
        page.wait_for_selector("#messages article:last-of-type .text:not(:empty)")
        page.click("#stop")
        chat.wait_for_state("ready")
        stopped = page.locator(".message.assistant .stats").last.text_content()
        assert stopped.endswith("· stopped") and int(re.search(r"(\d+) tokens", stopped)[1]) < 200, stopped
        page.click("#new-chat")
        assert page.locator(".message").count() == 0
        chat.settings(max_tokens=max_tokens)
        again = chat.ask(QUESTION)
        assert "Paris" in again.text, again


def test_site_works_from_a_sub_path_of_a_plain_static_host(demo_site, tmp_path):
    """python -m http.server: no COOP/COEP (so no wasm threads), no Range, a folder deep in the host."""
    www = tmp_path / "www"
    shutil.copytree(demo_site, www / "some" / "sub" / "path")
    default = site_index(demo_site)["models"][0]
    with plain_static_server(www) as base, chromium_context() as context:
        network = NetworkLog(context)
        chat = ChatPage(context.new_page())
        chat.open(f"{base}/some/sub/path/", "wasm", default["path"])
        chat.settings(max_tokens=16)
        backend = chat.load()
        reply = chat.ask(QUESTION)
        isolated = chat.page.evaluate("crossOriginIsolated")
        isolation = chat.text("#isolation")
    assert "Paris" in reply.text, reply
    assert isolated is False
    assert isolation.startswith("Not cross-origin isolated (the server sends no COOP/COEP headers): wasm threads are off")
    assert backend.startswith("WebAssembly (wasm), 1 thread: the page is not crossOriginIsolated"), backend
    assert all(url.startswith(f"{base}/some/sub/path/") for url in network.urls), network.urls


def test_corrupt_shard_on_the_server_is_detected_before_use(tiny_chat_artifact, tmp_path):
    site = build_site([tiny_chat_artifact], tmp_path / "site")
    model = site_index(site)["models"][0]["path"]
    shard = site / model / "weights" / "shard-0000.bin"
    data = bytearray(shard.read_bytes())
    data[4096] ^= 0xFF
    shard.write_bytes(data)
    with webrt_serve(site) as url, chromium_context() as context:
        chat = ChatPage(context.new_page())
        chat.open(url, "wasm")
        chat.page.click("#load")
        state = chat.wait_for_state("ready", "error")
        error = chat.text("#error")
        cached = chat.page.evaluate("""async () => {
          const names = await caches.keys();
          const keys = await Promise.all(names.map(async (n) => (await (await caches.open(n)).keys()).map((r) => r.url)));
          return keys.flat();
        }""")
    assert state == "error"
    assert error.startswith("Loading failed: IntegrityError: weights/shard-0000.bin is corrupt (sha256 "), error
    assert "compile or copy the artifact again" in error
    assert not any("shard-0000" in key for key in cached), cached  # bad bytes are not kept, nor resumed from


# streams `reply` through the page's own rendering path (view.renderStream), in small deltas that
# split tags and Markdown marks; returns what the page then shows
RENDER_JS = """async ([app, reply]) => {
  const view = await import(`./${app}demo/view.js`);
  async function* stream() {
    for (let i = 0; i < reply.length; i += 5) yield { choices: [{ delta: { content: reply.slice(i, i + 5) }, finish_reason: null }] };
    yield { choices: [{ delta: {}, finish_reason: "stop" }], usage: { completion_tokens: 9, extra: { device: "wasm", threads: 1 } } };
  }
  const list = document.getElementById("messages");
  const message = view.addMessage(list, "assistant");
  const { text } = await view.renderStream(stream(), message);
  // a javascript: link would run when clicked (an http one would open a tab: those are left alone)
  for (const link of list.querySelectorAll("a")) if (!/^https?:/.test(link.getAttribute("href") ?? "")) link.click();
  await new Promise((resolve) => setTimeout(resolve, 300));  // time for an image error or a load to fire
  return { text, shown: message.body.innerText, html: message.body.innerHTML, pwned: window.pwned ?? null,
           tags: [...message.body.querySelectorAll("*")].map((e) => e.tagName.toLowerCase()),
           attributes: [...message.body.querySelectorAll("*")].flatMap((e) => e.getAttributeNames()),
           hrefs: [...message.body.querySelectorAll("a")].map((a) => a.getAttribute("href")) };
}"""

XSS = "\n\n".join([
    '<img src=x onerror="window.pwned = 1"><script>window.pwned = 2</script><b>bold</b> & done',
    '<div onmouseover="window.pwned = 3" style="position:fixed;inset:0">cover</div>',
    '<svg onload="window.pwned = 4"></svg><iframe src="javascript:window.pwned = 5"></iframe>',
    '[click](javascript:window.pwned=6) <a href="javascript:window.pwned=7">raw link</a> [ok](https://example.org/)',
    '![tracker](http://127.0.0.1:9/pixel.png) <details open ontoggle="window.pwned = 8">x</details>',
    "```html\n<script>window.pwned = 9</script>\n```",
])


def test_reply_markup_is_shown_as_text_and_runs_nothing(demo_site, demo_url):
    """The model's raw HTML shows as text, Markdown links go only to http(s), and nothing runs:
    no script, no event handler, no dialog, no request."""
    app = site_index(demo_site)["app"]
    with chromium_context() as context:
        chat = ChatPage(context.new_page())
        chat.open(demo_url)
        dialogs, requests = [], []
        chat.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        context.on("request", lambda r: requests.append(r.url))
        result = chat.page.evaluate(RENDER_JS, [app, XSS])
    assert result["text"] == XSS
    assert result["pwned"] is None and dialogs == [] and requests == [], (result["pwned"], dialogs, requests)
    assert set(result["tags"]) <= {"p", "br", "a", "pre", "code", "button"}, result["tags"]
    assert not [a for a in result["attributes"] if a.startswith("on") or a in ("style", "src")], result["attributes"]
    assert result["hrefs"] == [None, "https://example.org/"], result["hrefs"]  # a javascript: href is dropped
    for raw in ('<img src=x onerror="window.pwned = 1">', "<script>window.pwned = 2</script>", "<b>bold</b> & done",
                '<div onmouseover="window.pwned = 3" style="position:fixed;inset:0">', "<svg onload=",
                '<a href="javascript:window.pwned=7">', '<details open ontoggle="window.pwned = 8">',
                "<script>window.pwned = 9</script>"):
        assert raw in result["shown"], raw  # shown as the text it is


MARKDOWN_REPLY = """## Reversing a list

Use **slicing** or `reversed()`:

```python
items = [1, 2, 3]
print(items[::-1])
```

1. slicing makes a copy
2. `list.reverse()` works in place
"""


def test_reply_markdown_is_rendered_with_a_code_block_and_a_copy_button(demo_site, demo_url):
    app = site_index(demo_site)["app"]
    SCREENSHOTS.mkdir(exist_ok=True)
    with chromium_context() as context:
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        chat = ChatPage(context.new_page())
        chat.open(demo_url)
        result = chat.page.evaluate(RENDER_JS, [app, MARKDOWN_REPLY])
        code = chat.page.locator("#messages pre").first
        code.screenshot(path=SCREENSHOTS / "demo-markdown-code.png")
        chat.page.locator("#messages .message").last.screenshot(path=SCREENSHOTS / "demo-markdown.png")
        chat.page.locator("#messages pre .copy").click()
        # a locator assertion, not a JS predicate: the page's Content-Security-Policy forbids eval
        expect(chat.page.locator("#messages pre .copy")).not_to_have_text("Copy")
        copied = chat.page.evaluate("navigator.clipboard.readText()")
        label = chat.page.locator("#messages pre .copy").text_content()
        box = code.bounding_box()
    assert result["text"] == MARKDOWN_REPLY
    assert ["h2", "strong", "code", "pre", "ol", "li"] == [t for t in ["h2", "strong", "code", "pre", "ol", "li"] if t in result["tags"]]
    assert '<code class="language-python">' in result["html"]
    assert label == "Copied" and copied == "items = [1, 2, 3]\nprint(items[::-1])\n"
    # the screenshot shows a code block: a shaded box, its monospace lines darker than the shade
    from PIL import Image

    shot = Image.open(SCREENSHOTS / "demo-markdown-code.png").convert("L")
    assert abs(shot.width - box["width"]) <= 2 and shot.height >= 40, (shot.size, box)
    page_white = Image.open(SCREENSHOTS / "demo-markdown.png").convert("L").getpixel((2, 2))
    shade = shot.getpixel((3, shot.height // 2))
    assert shade < page_white, (shade, page_white)  # the block's background differs from the message's
    assert min(shot.getdata()) < shade - 80  # and there is text in it


def test_model_that_will_not_fit_is_refused_before_downloading(demo_site, demo_url):
    default = site_index(demo_site)["models"][0]
    with chromium_context() as context:
        # a browser with 10 MB of storage left for this site
        context.add_init_script("navigator.storage.estimate = async () => ({ quota: 60e6, usage: 50e6 });")
        network = NetworkLog(context)
        chat = ChatPage(context.new_page())
        chat.open(demo_url, "wasm", default["path"])
        state = chat.state()
        fit = chat.text("#fit")
        load_disabled = chat.page.is_disabled("#load")
        chat.page.fill("#prompt", QUESTION)
        chat.page.press("#prompt", "Enter")  # asking anyway does not start a download
        chat.wait_for_state("wont-fit")
        messages = chat.page.locator(".message").count()
    assert state == "wont-fit" and load_disabled
    assert re.match(r"The model will not fit: it needs [\d.]+ MB of browser storage, and this site may use only "
                    r"10\.0 MB more", fit), fit
    assert messages == 0
    assert not any("/weights/" in url for url in network.urls)


def test_interrupted_download_resumes_with_a_range_request(demo_site, demo_url):
    index = site_index(demo_site)
    tiny = index["models"][1]["path"]
    shard = json.loads((demo_site / tiny / "manifest.json").read_text())["weights"]["shards"][0]
    url = f"{demo_url}{tiny}{shard['file']}"
    assert shard["bytes"] > 9 << 20
    with chromium_context() as context:
        network = NetworkLog(context)
        chat = ChatPage(context.new_page())
        chat.open(demo_url)
        result = chat.page.evaluate("""async ([app, url]) => {
          const { FileCache } = await import(`./${app}file_cache.js`);
          const cache = await FileCache.open("resume-test");
          const stop = new AbortController();
          let received = 0;
          let error = null;
          try {  // cut the connection after 9 MiB, as a closed tab or a dropped network would
            await cache.download(url, (n) => { received += n; if (received > 9 * 2 ** 20) stop.abort(); }, { signal: stop.signal });
          } catch (err) { error = `${err.name}: ${err.message}`; }
          const parts = (await cache.parts(url)).length;
          let resumed = 0;
          const bytes = await cache.download(url, (n, { cached }) => { if (cached) resumed += n; });
          const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
          return { error, parts, resumed, length: bytes.byteLength,
                   sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("") };
        }""", [index["app"], url])
    assert result["error"].startswith(f"FetchError: the download of {url} stopped after"), result
    assert result["parts"] == 1 and result["resumed"] == 8 << 20
    assert result["length"] == shard["bytes"] and result["sha256"] == shard["sha256"]
    # the second request asked for, and got, only the rest
    assert [(r, s, n) for u, r, s, n in network.ranges if u == url] == [
        (None, 200, shard["bytes"]), (f"bytes={8 << 20}-", 206, shard["bytes"] - (8 << 20))]


def test_webrt_demo_check_compiles_builds_serves_and_answers(tmp_path, monkeypatch):
    """The README's main job: from nothing, `webrt demo` compiles the default model, builds the
    site, serves it; --check drives one chat turn in headless Chromium and prints the reply."""
    monkeypatch.chdir(tmp_path)
    result = webrt("demo", "--check", "--device", "wasm")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout, result.stdout
    assert "compiling kernels" in result.stderr and "site built in webrt-site" in result.stderr
    assert (tmp_path / "SmolLM2-135M-Instruct-q4f32" / "manifest.json").is_file()
    assert (tmp_path / "webrt-site" / "site.json").is_file()
    assert re.search(r"WebAssembly \(wasm\), \d+ threads?", result.stderr)
