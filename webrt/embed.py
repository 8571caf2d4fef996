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


def embed_texts(artifact: Path, texts: list[str], dimensions: int | None, device: str, threads: int | None) -> dict:
    """`webrt embed`: the OpenAI-shaped response for texts, input errors refused before the browser starts."""
    config = check_embedding_artifact(artifact)["model"]["config"]
    for i, text in enumerate(texts):
        if not text.strip():
            raise WebrtError(f"--input number {i + 1} is empty: give some text to embed")
    if dimensions is not None and not 1 <= dimensions <= config["hidden_size"]:
        raise WebrtError(f"--dimensions {dimensions} is outside [1, {config['hidden_size']}], the model's embedding size")
    request = {"input": texts, **({"dimensions": dimensions} if dimensions else {})}
    result = run_embeddings(artifact, [request], device, threads)
    reply = result["replies"][0]
    if "error" in reply:
        raise WebrtError(reply["error"].split(": ", 1)[-1])
    reply["usage"]["extra"]["device_reason"] = result["info"]["device_reason"]
    return reply


def summary_lines(texts: list[str], reply: dict) -> list[str]:
    """Each input's embedding in short, then the cosine similarity of every pair."""
    import numpy as np

    vectors = np.array([d["embedding"] for d in reply["data"]], dtype=np.float64)
    lines = []
    for text, v in zip(texts, vectors):
        head = ", ".join(f"{x:.4f}" for x in v[:4])
        lines.append(f"{text[:48]!r}: {len(v)} dims, norm {np.linalg.norm(v):.4f}, [{head}, ...]")
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            lines.append(f"cosine({i + 1}, {j + 1}) = {unit[i] @ unit[j]:.4f}")
    return lines
