"""Drive the chat page of a built site (web/demo/) in headless Chromium, the way a visitor would:
choose a model and a backend, load, type a question, press Enter, read the streamed reply.
`webrt demo --check` and the tests use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from .errors import WebrtError

LOAD_TIMEOUT_MS = 600_000  # SwiftShader WebGPU on a busy machine takes minutes for one reply
# Records every text the newest reply shows while it streams, so a caller can tell a streamed reply
# from one that appeared at once.
WATCH_REPLY_JS = """
() => {
  window.webrtReplyTexts = [];
  const list = document.getElementById("messages");
  new MutationObserver(() => {
    const replies = list.querySelectorAll(".message.assistant .text");
    const last = replies[replies.length - 1];
    if (last) window.webrtReplyTexts.push(last.textContent);
  }).observe(list, { childList: true, subtree: true, characterData: true });
}
"""


class CheckFailed(WebrtError):
    """The page did not answer: a failed check, not bad input."""

    exit_code = 1


@dataclass
class Reply:
    text: str
    stats: str
    partial_texts: list[str] = field(default_factory=list)  # what the reply showed while streaming


class ChatPage:
    """The chat page open in a Playwright page."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda err: self.errors.append(str(err)))

    def open(self, url: str, device: str = "auto", model: str | None = None) -> None:
        query = "?" + urlencode({"device": device, **({"model": model} if model else {})})
        self.page.goto(url + query)
        self.wait_for_state("idle", "wont-fit", "error", timeout=60_000)

    def state(self) -> str:
        return self.page.get_attribute("body", "data-state")

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)

    def wait_for_state(self, *states: str, timeout: float = LOAD_TIMEOUT_MS) -> str:
        # a selector, not a JS predicate: the page's Content-Security-Policy forbids eval
        wanted = ", ".join(f'body[data-state="{s}"]' for s in states)
        try:
            self.page.wait_for_selector(wanted, state="attached", timeout=timeout)
        except Exception:  # noqa: BLE001 - playwright's timeout; say what the page shows instead
            raise CheckFailed(f"the chat page did not reach {' or '.join(states)} (it is {self.state()!r}; "
                              f"{self.problem() or 'no error shown'})") from None
        return self.state()

    def problem(self) -> str:
        shown = [self.text(s).strip() for s in ("#error", "#fit .problem") if self.page.query_selector(s)]
        return "; ".join(filter(None, shown + self.errors))

    def settings(self, max_tokens: int | None = None, temperature: float | None = None, system: str | None = None):
        if self.page.get_attribute("#settings", "open") is None:
            self.page.click("#settings summary")
        if max_tokens is not None:
            self.page.fill("#max-tokens", str(max_tokens))
        if temperature is not None:
            self.page.fill("#temperature", str(temperature))
        if system is not None:
            self.page.fill("#system", system)

    def load(self) -> str:
        """Click Load and wait; returns the backend line (device, threads, why)."""
        self.page.click("#load")
        if self.wait_for_state("ready", "error", "wont-fit") != "ready":
            raise CheckFailed(f"the model did not load: {self.problem()}")
        return self.text("#backend")

    def ask(self, prompt: str, timeout: float = LOAD_TIMEOUT_MS) -> Reply:
        """Type the prompt, press Enter, and wait for the whole streamed reply."""
        self.page.evaluate(WATCH_REPLY_JS)
        self.page.fill("#prompt", prompt)
        self.page.press("#prompt", "Enter")
        self.page.wait_for_selector(".message.assistant", timeout=timeout)
        self.wait_for_state("ready", "error", timeout=timeout)
        last = self.page.locator(".message.assistant").last
        reply = Reply(last.locator(".text").text_content(), last.locator(".stats").text_content(),
                      self.page.evaluate("window.webrtReplyTexts"))
        if last.locator(".stats.problem").count():
            raise CheckFailed(f"the reply failed: {reply.stats}")
        return reply


def check_site(url: str, device: str, prompt: str, max_tokens: int) -> tuple[str, Reply]:
    """One chat turn on the site at url in a fresh headless Chromium; returns (backend line, reply)."""
    from .browser import chromium_context

    with chromium_context() as context:
        page = ChatPage(context.new_page())
        page.open(url, device)
        page.settings(max_tokens=max_tokens)
        backend = page.load()
        return backend, page.ask(prompt)
