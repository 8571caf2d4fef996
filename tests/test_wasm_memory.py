"""The wasm memory a loaded model holds is its weights and KV cache, not more: the kernels' libc
malloc (zig's std.heap.WasmAllocator) rounds each large allocation up to a power of two, which
made the real Gemma 3 270M take 504 MiB for 305 MiB of weights and cache (bench/gemma3_wllama.md)
until they were placed outside it (WasmKernels.placeResident)."""

from __future__ import annotations

import json
import math

import pytest

from webrt.browser import evaluate, shell_page

PAGE_JS = """
async ([url, threads], stage) => {
  const { WasmKernels } = await import("/shell/wasm_backend.js");
  const manifest = await (await fetch(url + "manifest.json")).json();
  const build = threads > 1 ? manifest.wasm.threads : manifest.wasm;
  const bytes = new Uint8Array(await (await fetch(url + build.file)).arrayBuffer());
  // the same build with no model in it: kernels, argument scratch and the workers' stacks
  const empty = await WasmKernels.create(bytes, { threads });
  const base = empty.memoryBytes;
  empty.destroy();
  const model = await window.webrt.loadModel(url, { device: "wasm", threads });
  const loaded = model.gpuBytes;
  const { logits } = await model.forward([1, 2, 3]);
  const out = { base, loaded, threads: model.threads, finite: logits.every((row) => row.every(Number.isFinite)) };
  model.unload();
  return out;
}
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_loaded_model_holds_its_weights_and_cache_once(llama_artifact, threads):
    manifest = json.loads((llama_artifact / "manifest.json").read_text())
    aligned = lambda n: -(-n // 64) * 64  # noqa: E731 - each tensor starts 64-byte aligned
    weights = sum(aligned(t["bytes"]) for t in manifest["weights"]["tensors"])
    state = sum(aligned(4 * math.prod(s["shape"])) for s in manifest["state"])  # float32
    with shell_page(llama_artifact) as (page, url):
        r = evaluate(page, PAGE_JS, [url, threads])
    assert r["threads"] == threads and r["finite"]
    # one block of whole 64 KiB pages on top of the empty kernels
    assert r["loaded"] <= r["base"] + weights + state + 65536, \
        f"{r['loaded'] - r['base'] - weights - state} bytes of wasm memory beyond weights {weights} and KV cache {state}"
