"""The wasm memory a loaded model holds is its weights and KV cache, not more: the kernels' libc
malloc (zig's std.heap.WasmAllocator) rounds each large allocation up to a power of two, which
made the real Gemma 3 270M take 504 MiB for 305 MiB of weights and cache (bench/gemma3_wllama.md)
until they were placed outside it (WasmKernels.placeResident); and a weight shard downloads into one
buffer, not a list of chunks joined into a second copy."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

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


LOAD_JS = """
async (url) => {
  try { await window.webrt.loadModel(url, { device: "wasm" }); return "loaded"; }
  catch (err) { return `${err.name}: ${err.message}`; }
}
"""


@pytest.mark.parametrize("change", [-1000, 1000])
def test_a_shard_shorter_or_longer_than_the_manifest_is_refused_with_its_real_length(llama_artifact, tmp_path, change):
    # shards download straight into a buffer of the manifest's size (web/loader.js): what does not fit is still counted
    copy = Path(shutil.copytree(llama_artifact, tmp_path / "cut"))
    shard = copy / "weights" / "shard-0000.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:change] if change < 0 else data + bytes(change))
    with shell_page(copy) as (page, url):
        message = page.evaluate(LOAD_JS, url)
    assert message == (f"IntegrityError: weights/shard-0000.bin has {len(data) + change} bytes, the manifest says "
                       f"{len(data)}; the file is truncated or replaced: compile or copy the artifact again"), message
