"""The npm package: what `npm pack` ships, and a sample app (tests/bundle_app/) built with esbuild
against the packed package that answers in headless Chromium with no import map."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from flask import send_from_directory

from webrt.browser import chromium_context, evaluate
from webrt.server import create_app, serve_in_background

REPO = Path(__file__).resolve().parents[1]
ESBUILD = REPO / "node_modules" / ".bin" / "esbuild"
# The app's build: one flat folder of output, so the Worker entry and the wasm thread pool's script
# sit beside every chunk that starts them (webrt and the app find them through import.meta.url, which
# in a chunk is the chunk's own URL); the dependencies become lazy chunks.
# xgrammar's emscripten glue names node's "url" and "module" on a path browsers never take.
ESBUILD_FLAGS = ["--bundle", "--format=esm", "--splitting", "--minify", "--external:url", "--external:module",
                 "--entry-names=[name]", "--chunk-names=[name]-[hash]"]
TYPES = {"web/index.d.ts", "web/errors.d.ts", "web/worker.d.ts"}


def npm(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(["npm", *args, "--no-audit", "--no-fund"], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def export_targets(package: dict) -> set[str]:
    """Every file package.json's `types` and `exports` (with their conditions) point at."""
    found = {package["types"]}

    def walk(value):
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    walk(package["exports"])
    return {f.removeprefix("./") for f in found}


def test_npm_pack_ships_the_shell_and_its_types_only():
    (listing,) = json.loads(npm("pack", "--dry-run", "--json"))
    files = {f["path"] for f in listing["files"]}
    package = json.loads((REPO / "package.json").read_text())
    shell = {p.relative_to(REPO).as_posix() for p in (REPO / "web").glob("*.js")}
    assert {"web/index.js", "web/worker.js", "web/wasm_threads.js", "web/engine.js"} <= shell
    assert shell <= files, shell - files
    assert TYPES <= files
    assert export_targets(package) <= files, export_targets(package) - files
    assert "./worker" in package["exports"]
    # nothing from the Python side, the tests or the sample app
    outside = {f for f in files if not f.startswith("web/") and f not in {"package.json", "README.md", "LICENSE"}}
    assert not outside, outside
    assert not [f for f in files if f.endswith(".py") or "/tests/" in f or f.startswith("tests/") or "node_modules" in f]


@pytest.fixture(scope="module")
def bundled_app(tmp_path_factory) -> Path:
    """The sample app built by esbuild from the packed package (a tarball unpacked into the app's
    node_modules, its dependencies linked from ours); returns the output folder."""
    if not ESBUILD.exists():
        pytest.fail("node_modules/.bin/esbuild is missing: run `npm ci` in the webrt folder (esbuild is a devDependency)")
    root = tmp_path_factory.mktemp("bundle")
    (listing,) = json.loads(npm("pack", "--json", "--pack-destination", str(root)))
    app = root / "app"
    installed = app / "node_modules" / "webrt"
    installed.mkdir(parents=True)
    with tarfile.open(root / listing["filename"]) as tar:
        for member in tar.getmembers():  # npm puts everything under package/
            member.name = member.name.removeprefix("package/")
            tar.extract(member, installed, filter="data")
    for dependency in json.loads((installed / "package.json").read_text())["dependencies"]:
        link = app / "node_modules" / dependency
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO / "node_modules" / dependency, target_is_directory=True)
    shutil.copytree(REPO / "tests" / "bundle_app", app / "src")
    entries = ["src/main.js", "src/worker.js", "node_modules/webrt/web/wasm_threads.js"]
    done = subprocess.run([str(ESBUILD), *entries, *ESBUILD_FLAGS, "--outdir=dist"], cwd=app, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shutil.copy(app / "src" / "index.html", app / "dist" / "index.html")
    return app / "dist"


def test_bundled_app_answers_paris_in_chromium(default_artifact, bundled_app):
    assert {"main.js", "worker.js", "wasm_threads.js", "index.html"} <= {p.name for p in bundled_app.iterdir()}
    server = create_app(default_artifact)  # the artifact at /model/, with the cross-origin isolation headers
    server.add_url_rule("/app/<path:name>", "bundled_app", lambda name: send_from_directory(bundled_app, name))
    with serve_in_background(server) as base, chromium_context() as context:
        page = context.new_page()
        requests, errors = [], []
        page.on("request", lambda r: requests.append(r.url))
        page.on("worker", lambda w: requests.append(w.url))
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(f"{base}/app/index.html?model=/model/&threads=2")
        result = evaluate(page, "async () => window.appResult", [])
        shown = page.text_content("#answer")
    assert "error" not in result, (result, errors)
    assert "Paris" in result["text"], result["text"]
    assert shown == result["text"]
    assert result["finish_reason"] == "stop"
    assert result["rejected"] == "InputError"
    assert result["device"] == "wasm"
    # two threads: the pool's Workers started from wasm_threads.js beside the bundle
    assert result["threads"] == 2, result["threads_reason"]
    assert f"{base}/app/worker.js" in requests and f"{base}/app/wasm_threads.js" in requests, requests
    # self-contained: nothing from the repo's shell or node_modules, no import map
    assert not [u for u in requests if "/shell/" in u or "/node_modules/" in u], requests
    assert not errors, errors
