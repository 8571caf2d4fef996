"""One headless Chromium for the whole benchmark and a fresh page per engine run, served by
webrt's Flask app (shell, node_modules, and the work folder as /model/) plus the bench pages."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from flask import Blueprint, send_from_directory

from ..browser import CHROMIUM_FLAGS, chromium_path
from ..errors import WebrtError
from ..server import create_app, serve_in_background

PAGES = Path(__file__).parent / "web"
# precise JS heap numbers in performance.memory (otherwise bucketed)
FLAGS = [f for f in CHROMIUM_FLAGS if f != "--headless"] + ["--enable-precise-memory-info"]


def bench_pages() -> Blueprint:
    pages = Blueprint("bench", __name__)

    @pages.get("/bench/<path:name>")
    def page(name):
        return send_from_directory(PAGES, name)

    return pages


class BrowserSession:
    """Runs bench pages in one browser; `workdir` is served as /model/."""

    def __init__(self, context, base: str):
        self.context = context
        self.base = base

    def call(self, function: str, config: dict, timeout_s: float) -> dict:
        """Open a fresh bench page and await window[function](config) there."""
        page = self.context.new_page()
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.set_default_timeout(timeout_s * 1000)
        try:
            page.goto(f"{self.base}/bench/bench.html")
            try:
                page.wait_for_function("window.benchReady === true", timeout=30_000)
            except Exception:  # noqa: BLE001 - playwright's timeout; the page's own errors say why
                raise WebrtError(f"the bench page did not load: {'; '.join(errors) or 'no error reported'} "
                                 "(run `npm ci` in the webrt folder for its JS dependencies)") from None
            return page.evaluate(f"(config) => window.{function}(config)", config)
        finally:
            page.close()


@contextmanager
def browser_session(workdir: Path):
    from playwright.sync_api import sync_playwright

    app = create_app(workdir)
    app.register_blueprint(bench_pages())
    profile = tempfile.mkdtemp(prefix="webrt-bench-chromium-")
    try:
        with serve_in_background(app) as base, sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(profile, executable_path=chromium_path(),
                                                            headless=True, args=FLAGS)
            try:
                yield BrowserSession(context, base)
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
