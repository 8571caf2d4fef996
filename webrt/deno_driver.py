"""Drive the JS shell in Deno (web/deno_runner.js), for `webrt run/generate --runtime deno` and the
tests: a second WebGPU implementation (wgpu, the one Firefox ships), which on a machine without a
GPU runs over Mesa's lavapipe and has `shader-f16`. The same calls as webrt/browser.py."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from .browser import STAGE_TIMEOUT_S, DriverTimeout
from .errors import WebrtError
from .server import NODE_MODULES, WEB_DIR, create_app, serve_in_background
from .site import VENDOR

RUNNER = WEB_DIR / "deno_runner.js"
# Mesa's software Vulkan driver (Debian mesa-vulkan-drivers): the adapter wgpu finds without a GPU
LAVAPIPE_ICD = Path("/usr/share/vulkan/icd.d/lvp_icd.x86_64.json")


def deno_path() -> str:
    path = os.environ.get("WEBRT_DENO") or shutil.which("deno")
    if not path:
        try:
            from deno import find_deno_bin  # the PyPI wheel that ships the binary
            path = find_deno_bin()
        except (ImportError, FileNotFoundError):
            path = None
    if not path or not Path(path).exists():
        raise WebrtError("Deno not found: install it (pip install deno) or set WEBRT_DENO to its path")
    return path


def deno_env() -> dict:
    """The environment for Deno: lavapipe as the Vulkan driver unless VK_ICD_FILENAMES says otherwise."""
    env = dict(os.environ)
    if "VK_ICD_FILENAMES" not in env and LAVAPIPE_ICD.exists():
        env["VK_ICD_FILENAMES"] = str(LAVAPIPE_ICD)
    return env


def _import_map(folder: Path) -> Path:
    """The shell's bare npm specifiers mapped to node_modules' ES module files (as web/run.html does)."""
    missing = [spec for spec, (file, _) in VENDOR.items() if not (NODE_MODULES / file).exists()]
    if missing:
        raise WebrtError(f"{', '.join(missing)} not found under {NODE_MODULES}: run `npm ci` in the webrt folder")
    path = folder / "import_map.json"
    path.write_text(json.dumps({"imports": {spec: (NODE_MODULES / file).as_uri() for spec, (file, _) in VENDOR.items()}}))
    return path


@contextmanager
def artifact_url(artifact_dir: Path, over: str = "file"):
    """The artifact's URL for Deno: file:// (read from disk) or http:// (served by webrt's server)."""
    if over == "file":
        yield Path(artifact_dir).resolve().as_uri() + "/"
    elif over == "http":
        with serve_in_background(create_app(Path(artifact_dir))) as base:
            yield f"{base}/model/"
    else:
        raise WebrtError(f"artifact URLs are file or http, got {over!r}")


def run_job(job: dict, on_delta=lambda text: None, timeout_s: float = STAGE_TIMEOUT_S) -> dict:
    """Run one job of web/deno_runner.js; raises WebrtError for the error it reports and DriverTimeout
    naming the stage that did not finish within timeout_s."""
    with tempfile.TemporaryDirectory(prefix="webrt-deno-") as tmp:
        command = [deno_path(), "run", "--quiet", "--unstable-webgpu", "--allow-all", "--no-prompt",
                   f"--import-map={_import_map(Path(tmp))}", str(RUNNER)]
        env = {**deno_env(), "DENO_NO_UPDATE_CHECK": "1", "XDG_RUNTIME_DIR": tmp}
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=env, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in process.stdout] + [lines.put(None)],
                         daemon=True).start()
        stderr: list[str] = []
        threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True).start()
        process.stdin.write(json.dumps(job))
        process.stdin.close()
        stage = "starting Deno"
        try:
            while True:
                try:
                    line = lines.get(timeout=timeout_s)
                except queue.Empty:
                    raise DriverTimeout(f"Deno hung: {stage} did not finish in {timeout_s:g} s") from None
                if line is None:
                    tail = "".join(stderr[-20:]).strip()
                    raise WebrtError(f"Deno exited (code {process.wait()}) during {stage}: {tail or 'no output'}")
                if not line.startswith("{"):
                    continue  # a library's own console output
                message = json.loads(line)
                if "stage" in message:
                    stage = message["stage"]
                elif "delta" in message:
                    on_delta(message["delta"])
                elif "error" in message:
                    raise WebrtError(f"in Deno: {message['error']}")
                elif "result" in message:
                    return message["result"]
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def run_script(job_js: str, args: list, timeout_s: float = STAGE_TIMEOUT_S) -> object:
    """A page script as webrt.browser and the tests write them, `async (args, stage) => result` using
    `window.webrt`, run in Deno with the shell as `webrt`; returns what it returns."""
    return run_job({"job": "script", "source": job_js.strip().replace("window.webrt", "webrt"), "args": args},
                   timeout_s=timeout_s)


def run_forward(artifact_dir: Path, token_lists: list[list[int]], device: str = "webgpu",
                threads: int | None = None, tuning="auto", timeout_s: float = STAGE_TIMEOUT_S,
                over: str = "file", options: dict | None = None) -> dict:
    """As browser.run_forward: logits for each token list, with device, adapter, threads, timings,
    tuning, precision (and its reason) and memory_bytes."""
    options = {"tuning": tuning, **({"threads": threads} if threads is not None else {}), **(options or {})}
    with artifact_url(artifact_dir, over) as url:
        return run_job({"job": "forward", "url": url, "device": device, "token_lists": token_lists,
                        "options": options}, timeout_s=timeout_s)


def run_entries(artifact_dir: Path, jobs: list[tuple[str, dict]], device: str = "webgpu",
                threads: int | None = None, wasm_build: str | None = None) -> list[dict]:
    """As browser.run_entries."""
    options = {k: v for k, v in {"threads": threads, "wasmBuild": wasm_build}.items() if v is not None}
    with artifact_url(artifact_dir) as url:
        return run_job({"job": "entries", "url": url, "device": device, "jobs": jobs, "options": options})["outputs"]


def run_chat_turns(artifact_dir: Path, requests: list[dict], on_delta=lambda text: None, device: str = "webgpu",
                   engine_options: dict | None = None, timeout_s: float = STAGE_TIMEOUT_S,
                   over: str = "file") -> dict:
    """Several chat completions (turns) on one engine, each streamed; returns the placement
    (device, adapter, precision, timings, memory_bytes) and `replies`, one per request."""
    with artifact_url(artifact_dir, over) as url:
        return run_job({"job": "chat", "url": url, "device": device, "requests": requests,
                        "options": engine_options or {}}, on_delta, timeout_s)


def run_chat(artifact_dir: Path, request: dict, on_delta=lambda text: None, device: str = "webgpu",
             engine_options: dict | None = None, timeout_s: float = STAGE_TIMEOUT_S) -> dict:
    """As browser.run_chat: one chat completion, streamed; {text, finish_reason, usage, device, ...}."""
    result = run_chat_turns(artifact_dir, [request], on_delta, device, engine_options, timeout_s)
    replies = result.pop("replies")
    return {**result, **replies[0]}

