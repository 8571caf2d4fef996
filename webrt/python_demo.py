"""Drive the Python page of a site built with `webrt build-site --python` (web/demo/python.html) in
headless Chromium, as a visitor would: wait for Python to start, put code in the cell, press Run,
read the output. The tests and bench/pyodide.py use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from .demo import CheckFailed

START_TIMEOUT_MS = 120_000  # Pyodide's core (10 MB of wasm) compiles in a few seconds
RUN_TIMEOUT_MS = 600_000
# Records the output's text at every change, so a caller can tell streamed output from output that
# appeared at once.
WATCH_OUTPUT_JS = """
() => {
  window.webrtOutputTexts = [];
  const output = document.getElementById("output");
  new MutationObserver(() => window.webrtOutputTexts.push(output.textContent))
    .observe(output, { childList: true, subtree: true, characterData: true });
}
"""


@dataclass
class Run:
    output: str  # stdout and stderr, as the page shows them (a raised error's traceback at the end)
    status: str
    partial_outputs: list[str] = field(default_factory=list)


class PythonPage:
    """The Python page open in a Playwright page."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda err: self.errors.append(str(err)))

    def state(self) -> str:
        return self.page.get_attribute("body", "data-state")

    def wait_for_state(self, *states: str, timeout: float) -> str:
        wanted = ", ".join(f'body[data-state="{s}"]' for s in states)
        try:
            self.page.wait_for_selector(wanted, state="attached", timeout=timeout)
        except Exception:  # noqa: BLE001 - playwright's timeout; say what the page shows instead
            raise CheckFailed(f"the Python page did not reach {' or '.join(states)} (it is {self.state()!r}; "
                              f"{self.page.inner_text('#status')}; {self.errors or 'no page errors'})") from None
        return self.state()

    def open(self, site_url: str, model: str | None = None) -> str:
        """Open python.html and wait until Python is ready; returns the preloaded code."""
        self.page.goto(site_url + "python.html" + ("?" + urlencode({"model": model}) if model else ""))
        if self.wait_for_state("ready", "error", timeout=START_TIMEOUT_MS) != "ready":
            raise CheckFailed(f"Python did not start: {self.page.inner_text('#status')}")
        return self.page.input_value("#code")

    def run(self, code: str | None = None, timeout: float = RUN_TIMEOUT_MS) -> Run:
        """Run the cell (with code in it, if given) and wait until the run ends."""
        if code is not None:
            self.page.fill("#code", code)
        self.page.evaluate(WATCH_OUTPUT_JS)
        self.page.click("#run")
        self.wait_for_state("ready", timeout=timeout)
        return Run(self.page.text_content("#output"), self.page.inner_text("#status"),
                   self.page.evaluate("window.webrtOutputTexts"))
