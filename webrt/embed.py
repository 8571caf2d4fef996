"""Drive engine.embeddings.create in headless Chromium, on the page or in a Worker: for `webrt embed`,
the tests and the embedding benchmark."""

from __future__ import annotations

from pathlib import Path

from .artifact import read_manifest
from .browser import _checked, shell_page
from .errors import WebrtError

_EMBED_JS = """
async ([url, requests, options, inWorker]) => {
  try {
    const engine = inWorker
      ? await window.webrt.createWorkerEngine(new Worker("./worker.js", { type: "module" }), url, options)
      : await window.webrt.createEngine(url, options);
    const replies = [];
    for (const request of requests) {
      try {
        replies.push(await engine.embeddings.create(request));
      } catch (err) {
        replies.push({ error: `${err.name}: ${err.message}` });
      }
    }
    const info = engine.info;
    await engine.unload();
    return { replies, info };
  } catch (err) {
    return { error: `${err.name}: ${err.message}` };
  }
}
"""


def check_embedding_artifact(artifact: Path) -> dict:
    manifest = read_manifest(artifact)
    if manifest["model"].get("task") != "embedding":
        raise WebrtError(f"{artifact} holds a language model ({manifest['model']['name']}): `webrt embed` needs an "
                         "embedding model (compile a BertModel / XLMRobertaModel folder, e.g. all-MiniLM-L6-v2)")
    return manifest


def run_embeddings(artifact: Path, requests: list[dict], device: str = "webgpu", threads: int | None = None,
                   worker: bool = False) -> dict:
    """Load the artifact once and answer each embeddings request ({input, dimensions?}); returns
    {replies: [response or {error}], info}. worker: run the engine in a Web Worker."""
    options = {"device": device, **({"threads": threads} if threads else {})}
    with shell_page(artifact) as (page, url):
        return _checked(page.evaluate(_EMBED_JS, [url, requests, options, worker]))
