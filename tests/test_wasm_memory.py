"""The wasm memory a loaded model holds is its weights and KV cache, not more: the kernels' libc
malloc (zig's std.heap.WasmAllocator) rounds each large allocation up to a power of two, which
made the real Gemma 3 270M take 504 MiB for 305 MiB of weights and cache (bench/gemma3_wllama.md)
until they were placed outside it (WasmKernels.placeResident); and a weight shard downloads into one
buffer, not a list of chunks joined into a second copy."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
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



def _with_blocks(artifact: Path, folder: Path, block_bytes: int | None) -> Path:
    """A copy of `artifact` whose shards record block hashes of `block_bytes` (None: no blocks, the
    whole-shard download of an artifact from before them)."""
    import hashlib

    copy = Path(shutil.copytree(artifact, folder))
    manifest = json.loads((copy / "manifest.json").read_text())
    weights = manifest["weights"]
    weights.pop("block_bytes", None)
    for shard in weights["shards"]:
        shard.pop("blocks", None)
        if block_bytes:
            data = (copy / shard["file"]).read_bytes()
            shard["blocks"] = [hashlib.sha256(data[at:at + block_bytes]).hexdigest() for at in range(0, len(data), block_bytes)]
    if block_bytes:
        weights["block_bytes"] = block_bytes
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


LOGITS_JS = """
async ([url, threads]) => {
  const model = await window.webrt.loadModel(url, { device: "wasm", threads });
  const { logits } = await model.forward([1, 2, 3, 4, 5]);
  model.unload();
  return logits.map((row) => Array.from(row));
}
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_shards_streamed_in_blocks_load_the_same_weights_as_whole_shards(llama_artifact, tmp_path, threads):
    # 1000-byte blocks: blocks end inside tensors, tensors inside blocks (offsets are 64-byte aligned)
    streamed = _with_blocks(llama_artifact, tmp_path / "blocks", 1000)
    whole = _with_blocks(llama_artifact, tmp_path / "whole", None)
    assert len(json.loads((streamed / "manifest.json").read_text())["weights"]["shards"][0]["blocks"]) > 10
    logits = {}
    for name, folder in {"streamed": streamed, "whole": whole}.items():
        with shell_page(folder) as (page, url):
            logits[name] = page.evaluate(LOGITS_JS, [url, threads])
    assert logits["streamed"] == logits["whole"]


def test_a_corrupt_block_is_refused_naming_the_block(llama_artifact, tmp_path):
    copy = _with_blocks(llama_artifact, tmp_path / "corrupt", 1000)
    shard = copy / "weights" / "shard-0000.bin"
    data = bytearray(shard.read_bytes())
    data[5500] ^= 0xFF  # in the sixth block
    shard.write_bytes(data)
    blocks = len(json.loads((copy / "manifest.json").read_text())["weights"]["shards"][0]["blocks"])
    with shell_page(copy) as (page, url):
        message = page.evaluate(LOAD_JS, url)
    assert message.startswith(f"IntegrityError: weights/shard-0000.bin is corrupt (block 6 of {blocks}: sha256 "), message
    assert message.endswith("compile or copy the artifact again"), message


# what the kernels allocate themselves (TVMBackendAllocWorkspace, through the allocator) and the
# pages the allocator grows for it: 0.6-0.8 MiB measured on this model
KERNEL_WORKSPACE_BYTES = 1 << 20

GENERATE_JS = """
async ([url, threads]) => {
  const { evaluate, evaluateShape } = await import("/shell/shape_expr.js");
  const { tensorBytes } = await import("/shell/plan_inputs.js");
  const model = await window.webrt.loadModel(url, { device: "wasm", threads });
  const loaded = model.gpuBytes;
  const gen = new window.webrt.Generator(model, { prefillChunk: 16 });
  const greedy = async (prompt, n) => {
    gen.reset();
    const sampler = new window.webrt.Sampler({ temperature: 0 }, prompt);
    let { token } = await gen.prefill(prompt, sampler);
    const tokens = [token];
    while (tokens.length < n) {
      sampler.accept(token);
      tokens.push(token = await gen.decode(token, sampler));
    }
    return tokens;
  };
  const prompt = Array.from({ length: 37 }, (_, i) => (i * 7 + 3) % 200);
  // prefill chunks of 16 and 5 tokens and decodes at offsets up to 60: several programs, one after another
  const first = await greedy(prompt, 24);
  await greedy(prompt.slice(0, 3), 4);
  const again = await greedy(prompt, 24);
  // what each prepared program's plan needs at its capacity, 64-byte aligned, as docs/ARTIFACT.md describes the steps
  const aligned = (n) => Math.ceil(n / 64) * 64;
  const bound = new Set(Object.keys(model.executor.bound));
  const needs = [...model.executor.programs.programs.keys()].map((key) => {
    const entry = key.slice(0, key.indexOf(":"));
    const capacity = JSON.parse(key.slice(key.indexOf(":") + 1));
    const plan = model.manifest.entries[entry];
    let bytes = 0;
    for (const input of plan.inputs) {
      if (!input.values && !bound.has(input.name)) bytes += aligned(tensorBytes(evaluateShape(input.shape, capacity), input.dtype));
    }
    for (const step of plan.steps) {
      if (step.op === "storage") bytes += aligned(evaluate(step.bytes, capacity));
      if (step.op === "alloc") bytes += aligned(tensorBytes(evaluateShape(step.shape, capacity), step.dtype));
    }
    return bytes;
  });
  const out = { loaded, after: model.gpuBytes, programs: needs.length, largest: Math.max(...needs), total: needs.reduce((a, b) => a + b, 0),
                same: JSON.stringify(first) === JSON.stringify(again), first };
  model.unload();
  return out;
}
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_generating_holds_one_program_storage_beside_the_weights(llama_artifact, threads):
    # all programs share one arena (web/wasm_executor.js): the memory that generating adds is the
    # largest program's storage, not each program's, rounded up to a power of two by the allocator
    with shell_page(llama_artifact) as (page, url):
        r = evaluate(page, GENERATE_JS, [url, threads])
    assert r["same"], "the same prompt gave other tokens after other programs had used the arena"
    assert r["programs"] >= 3, r
    grown = r["after"] - r["loaded"]
    assert grown <= -(-r["largest"] // 65536) * 65536 + KERNEL_WORKSPACE_BYTES, \
        f"generating grew wasm memory by {grown} bytes; the largest of {r['programs']} programs needs {r['largest']} " \
        f"(all of them {r['total']}), the kernels' own workspace up to {KERNEL_WORKSPACE_BYTES}"


WINDOW_JS = """
async ([url, device, positions]) => {
  const run = async (contextWindow) => {
    const model = await window.webrt.loadModel(url, { device, threads: 1, contextWindow });
    const loaded = model.gpuBytes;
    const gen = new window.webrt.Generator(model, { prefillChunk: 16 });
    const prompt = Array.from({ length: 40 }, (_, i) => (i * 11 + 5) % 300);
    const sampler = new window.webrt.Sampler({ temperature: 0 }, prompt);
    let { token } = await gen.prefill(prompt, sampler);
    const tokens = [token];
    let full = null;
    while (true) {  // up to the page's window
      sampler.accept(token);
      try { tokens.push(token = await gen.decode(token, sampler)); } catch (err) { full = `${err.name}: ${err.message}`; break; }
      if (tokens.length >= positions + 8 - prompt.length) break;
    }
    const out = { loaded, tokens, full, contextWindow: model.contextWindow };
    model.unload();
    return out;
  };
  const refuse = async (contextWindow) => {
    try { await window.webrt.loadModel(url, { device, contextWindow }); return "loaded"; }
    catch (err) { return `${err.name}: ${err.message}`; }
  };
  return { small: await run(positions), whole: await run(undefined), tooLarge: await refuse(100000), notInteger: await refuse(1.5) };
}
"""


@pytest.mark.parametrize("device", ["wasm", "webgpu"])
def test_the_page_sizes_the_kv_cache_and_rope_tables_for_its_context_window(llama_artifact, device):
    # the artifact's window is 256; a page that loads 64 positions allocates the full-attention
    # caches and the RoPE tables for 64 rows (web/context_window.js) and generates the same tokens
    manifest = json.loads((llama_artifact / "manifest.json").read_text())
    most, window = manifest["model"]["config"]["context_window"], 64
    per_row = sum(4 * math.prod(s["shape"][1:]) for s in manifest["state"]) + \
        sum(t["bytes"] // t["shape"][0] for t in manifest["weights"]["tensors"] if t["name"].startswith("rope"))
    with shell_page(llama_artifact) as (page, url):
        r = evaluate(page, WINDOW_JS, [url, device, window])
    small, whole = r["small"], r["whole"]
    assert small["contextWindow"] == window and whole["contextWindow"] == most
    saved = whole["loaded"] - small["loaded"]
    # wasm grows whole 64 KiB pages; WebGPU counts buffer bytes
    assert abs(saved - per_row * (most - window)) <= 65536, (saved, per_row * (most - window))
    assert small["tokens"] == whole["tokens"][:len(small["tokens"])] and len(small["tokens"]) == window - 40 + 1
    assert small["full"] == f"InputError: the context window of {window} tokens is full", small["full"]
    assert r["tooLarge"] == (f"InputError: contextWindow must be an integer in [1, {most}] (the artifact's context window; "
                             "compile with a larger --context-window for more), got 100000"), r["tooLarge"]
    assert r["notInteger"].startswith("InputError: contextWindow must be an integer"), r["notInteger"]


FIT_JS = """
async ([url, device, windows]) => {
  const out = {};
  for (const contextWindow of windows) {
    try {
      const model = await window.webrt.loadModel(url, { device, threads: 1, contextWindow: contextWindow ?? undefined });
      out[contextWindow] = `loaded ${model.contextWindow}`;
      model.unload();
    } catch (err) {
      out[contextWindow] = `${err.name}: ${err.message}`;
    }
  }
  const adapter = await navigator.gpu?.requestAdapter();
  out.limit = adapter && Math.min(adapter.limits.maxStorageBufferBindingSize, adapter.limits.maxBufferSize);
  return out;
}
"""


@pytest.mark.parametrize("device", ["wasm", "webgpu"])
def test_the_check_before_download_counts_the_rows_of_the_page_window(llama_artifact, tmp_path, device):
    # the artifact as if compiled for millions of positions (its manifest's window and cache shapes
    # edited): each KV cache tensor would take 4 GiB at the artifact's window, more than wasm32 or
    # one WebGPU buffer holds; at the page's window (64, or the default 1024) the shell allocates a
    # few KiB, and the check before download counts those rows (it had refused any window)
    copy = Path(shutil.copytree(llama_artifact, tmp_path / "long"))
    manifest = json.loads((copy / "manifest.json").read_text())
    config = manifest["model"]["config"]
    per_row = {s["name"]: 4 * math.prod(s["shape"][1:]) for s in manifest["state"]}  # float32
    most = -(-4 * 1024 ** 3 // min(per_row.values()))
    for s in manifest["state"]:
        assert s["shape"][0] == config["context_window"], s  # no sliding layers: every cache has a row per position
        s["shape"][0] = most
    config["context_window"] = most
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with shell_page(copy) as (page, url):
        r = evaluate(page, FIT_JS, [url, device, [64, None, most]])
    assert r["64"] == "loaded 64", r["64"]
    assert r["null"] == "loaded 1024", r["null"]
    refused = r[str(most)]
    if device == "wasm":
        weights = sum(t["bytes"] for t in manifest["weights"]["tensors"])
        fits = int((0.9 * 4 * 1024 ** 3 - weights) // sum(per_row.values()))
        assert refused.startswith("OutOfMemoryError: the model needs ") and "GiB of KV cache at contextWindow" in refused, refused
    else:
        fits = r["limit"] // max(per_row.values())
        assert refused.startswith("OutOfMemoryError: the model will not fit this GPU: ") and \
            f"needs one buffer of {max(per_row.values()) * most / 2 ** 20:.1f} MiB at contextWindow" in refused, refused
    # one line: what is needed at which window, what the device allows, and the window that would load
    assert f"at contextWindow {most}," in refused and f"load it with contextWindow {fits} or less" in refused, refused
    assert "\n" not in refused


HIGH_POINTER_JS = """
import { readFileSync } from "node:fs";
const { WasmKernels } = await import(process.argv[1] + "/wasm_backend.js");
const kernels = await WasmKernels.create(readFileSync(process.argv[2]));
// the first 2 GiB taken outside the allocator: the pages it grows next lie above them
kernels.growPages(2 ** 31 - kernels.memoryBytes, "the first 2 GiB");
const ptr = kernels.alloc(1 << 20);
kernels.write(ptr, Uint8Array.of(1, 2, 3, 4));
console.log(JSON.stringify({ ptr, back: [...kernels.bytes(ptr, 4)] }));
kernels.free(ptr);
"""


def test_an_allocation_above_2_gib_is_an_unsigned_offset(llama_artifact):
    # webrt_alloc returns an i32, which JS reads as signed: an address past 2 GiB (wasm32 has 4) came
    # back negative, and writing there threw a RangeError. In Node: untouched pages cost no memory.
    web = Path(__file__).resolve().parent.parent / "web"
    build = llama_artifact / json.loads((llama_artifact / "manifest.json").read_text())["wasm"]["file"]  # the SIMD one
    result = subprocess.run(["node", "--input-type=module", "-e", HIGH_POINTER_JS, web.as_posix(), str(build)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    r = json.loads(result.stdout)
    assert r["ptr"] >= 2 ** 31 and r["back"] == [1, 2, 3, 4], r
