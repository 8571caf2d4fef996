"""Drive the JS shell in headless Chromium through Playwright, for `webrt run` and the tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import WebrtError
from .server import create_app, serve_in_background

# Flags verified in ../shared/NOTES.md: WebGPU through SwiftShader without a GPU, and no background
# networking (the closed network otherwise floods with refused connections).
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--enable-unsafe-webgpu",
    "--enable-features=Vulkan,WebGPUService", "--use-webgpu-adapter=swiftshader",
]


def chromium_path() -> str:
    path = os.environ.get("WEBRT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise WebrtError(f"Chromium not found at {path}: install it (apt-get install chromium) "
                         "or set WEBRT_CHROMIUM to its path")
    return path


@contextmanager
def chromium_context():
    """Headless Chromium with a fresh profile (its storage lives as long as the context); yields
    a Playwright BrowserContext."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="webrt-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=chromium_path(), headless=True,
                args=[f for f in CHROMIUM_FLAGS if f != "--headless"])
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def shell_page(artifact_dir: Path):
    """A headless Chromium page with the shell loaded; yields (page, model_url)."""
    with serve_in_background(create_app(artifact_dir)) as base, chromium_context() as context:
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.goto(f"{base}/shell/run.html")
        try:
            page.wait_for_function("window.webrtReady === true", timeout=30_000)
        except Exception:  # noqa: BLE001 - playwright's timeout; the page's own errors say why
            raise WebrtError(f"the JS shell did not load: {'; '.join(errors) or 'no error reported'} "
                             "(run `npm ci` in the webrt folder for its JS dependencies)") from None
        yield page, f"{base}/model/"


# A driver script runs under a watchdog: it names its stage (stage("...")) as it goes, and a stage
# that takes longer than the timeout ends the call with {timeout: stage} instead of hanging (a
# stuck GPU queue never settles its promises, but timers still fire).
_WATCHDOG_JS = """
async ([args, timeoutMs]) => {
  let timer, fire;
  const watchdog = new Promise((resolve) => { fire = resolve; });
  const stage = (name) => {
    clearTimeout(timer);
    timer = setTimeout(() => fire({ timeout: name }), timeoutMs);
  };
  stage("loading the model");
  try {
    return await Promise.race([(JOB)(args, stage), watchdog]);
  } finally {
    clearTimeout(timer);
  }
}
"""
STAGE_TIMEOUT_S = 900  # SwiftShader on a busy machine takes minutes to create the default model's pipelines


class DriverTimeout(WebrtError):
    """A stage in the browser did not finish in time: a hang, not bad input."""

    exit_code = 1


def evaluate(page, job_js: str, args: list, timeout_s: float = STAGE_TIMEOUT_S) -> dict:
    """Run a driver script `async (args, stage) => result` in the page under the stage watchdog;
    raises WebrtError for an error it returns and DriverTimeout naming the stage that hung."""
    return _checked(page.evaluate(_WATCHDOG_JS.replace("JOB", job_js.strip()), [args, timeout_s * 1000]), timeout_s)


_FORWARD_JS = """
async ([url, device, tokenLists, threads, tuning], stage) => {
  try {
    const onProgress = (p) => stage(`loading the model (${p.stage})`);
    const model = await window.webrt.loadModel(url, { device, threads: threads ?? undefined, tuning, onProgress });
    const results = [];
    for (const [i, tokens] of tokenLists.entries()) {
      stage(`forward pass ${i + 1} of ${tokenLists.length} (${tokens.length} tokens)`);
      const { logits, forward_ms } = await model.forward(tokens);
      results.push({ logits: logits.map((row) => Array.from(row)), forward_ms });
    }
    const info = { device: model.device, adapter: model.adapter, timings: model.timings, results,
                   threads: model.threads, threads_reason: model.threadsReason, tuning: model.tuning,
                   precision: model.precision, precision_reason: model.precisionReason };
    model.unload();
    return info;
  } catch (err) {
    return { error: `${err.name}: ${err.message}` };
  }
}
"""

_ENTRIES_JS = """
async ([url, device, jobs, options], stage) => {
  try {
    const model = await window.webrt.loadModel(url, { device, ...options });
    const outputs = [];
    for (const [entry, inputs] of jobs) {
      stage(`running ${entry}`);
      const typed = {};
      for (const [name, x] of Object.entries(inputs)) {
        const Typed = { int32: Int32Array, uint32: Uint32Array, float32: Float32Array }[x.dtype];
        typed[name] = { data: Typed.from(x.data), shape: x.shape };
      }
      const [out] = await model.run(entry, typed);
      outputs.push({ data: Array.from(out.data), shape: out.shape });
    }
    model.unload();
    return { outputs };
  } catch (err) {
    return { error: `${err.name}: ${err.message}` };
  }
}
"""


def _checked(result: dict, timeout_s: float | None = None) -> dict:
    if "timeout" in result:
        raise DriverTimeout(f"the browser hung: {result['timeout']} did not finish in {timeout_s:g} s")
    if "error" in result:
        raise WebrtError(f"in the browser: {result['error']}")
    return result


def run_forward(artifact_dir: Path, token_lists: list[list[int]], device: str = "webgpu",
                threads: int | None = None, tuning="auto", timeout_s: float = STAGE_TIMEOUT_S) -> dict:
    """Load the artifact once and return logits for each token list, with device, threads,
    timings and tuning. threads (wasm): None is the shell's default, one per core; tuning: the
    loadModel option (false, "auto", true or {budget_s})."""
    with shell_page(artifact_dir) as (page, url):
        return evaluate(page, _FORWARD_JS, [url, device, token_lists, threads, tuning], timeout_s)


def run_entries(artifact_dir: Path, jobs: list[tuple[str, dict]], device: str = "webgpu",
                threads: int | None = None, wasm_build: str | None = None) -> list[dict]:
    """Run entries in one page load. A job is (entry, {name: {data: flat list, shape, dtype}});
    each result is {data: flat list, shape}."""
    with shell_page(artifact_dir) as (page, url):
        options = {k: v for k, v in {"threads": threads, "wasmBuild": wasm_build}.items() if v is not None}
        return evaluate(page, _ENTRIES_JS, [url, device, jobs, options])["outputs"]


_CHAT_JS = """
async ([url, device, request, options], stage) => {
  try {
    const onProgress = (p) => stage(`loading the model (${p.stage})`);
    const engine = await window.webrt.createEngine(url, { device, onProgress, ...options });
    let last = null;
    let text = "";
    let n = 0;
    stage("prefill (the first token)");
    for await (const chunk of await engine.chat.completions.create({ ...request, stream: true })) {
      stage(`decode (token ${++n})`);
      const delta = chunk.choices[0].delta.content;
      if (delta) {
        text += delta;
        await window.webrtEmit(delta);
      }
      last = chunk;
    }
    const info = engine.info;
    engine.unload();
    const extra = last.usage.extra;
    return { text, token_ids: extra.token_ids, finish_reason: last.choices[0].finish_reason,
             prefill_tokens_per_s: extra.prefill_tokens_per_s, decode_tokens_per_s: extra.decode_tokens_per_s,
             ttft_ms: extra.time_to_first_token_ms, usage: last.usage, device: info.device,
             adapter: info.adapter, timings: info.timings, threads: info.threads,
             threads_reason: info.threads_reason, precision: info.precision, precision_reason: info.precision_reason };
  } catch (err) {
    return { error: `${err.name}: ${err.message}` };
  }
}
"""


def run_chat(artifact_dir: Path, request: dict, on_delta=lambda text: None, device: str = "webgpu",
             engine_options: dict | None = None, timeout_s: float = STAGE_TIMEOUT_S) -> dict:
    """One chat completion through the engine in headless Chromium; each text delta is passed to
    on_delta as it streams. Returns {text, finish_reason, usage, device, adapter, timings}."""
    with shell_page(artifact_dir) as (page, url):
        page.expose_function("webrtEmit", on_delta)
        return evaluate(page, _CHAT_JS, [url, device, request, engine_options or {}], timeout_s)
