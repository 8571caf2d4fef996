"""Engine faults in headless Chromium: a WebGPU device lost mid-generation (simulated with
device.destroy(), as SwiftShader has no watchdog to trip), a model that does not fit the device,
and a stuck GPU queue under the Python driver's watchdog."""

from __future__ import annotations

import pytest

from webrt.browser import _FORWARD_JS, DriverTimeout, evaluate, shell_page
from webrt.errors import WebrtError

REQUEST = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 6,
           "temperature": 0}

# Two engines in one page, WebGPU and wasm. The WebGPU device is destroyed after the second streamed
# token of a request; then each engine answers the same request again.
DEVICE_LOST_JS = """
async ([url, request, breakReload]) => {
  const tokens = async (engine, onChunk = () => {}) => {
    const ids = [];
    let n = 0;
    for await (const chunk of await engine.chat.completions.create({ ...request, stream: true })) {
      if (chunk.choices[0].delta.content) onChunk(++n);
      if (chunk.usage) ids.push(...chunk.usage.extra.token_ids);
    }
    return ids;
  };
  const gpu = await window.webrt.createEngine(url, { device: "webgpu", tuning: false });
  const wasm = await window.webrt.createEngine(url, { device: "wasm", tuning: false });
  const out = { before: await tokens(gpu), wasmBefore: await tokens(wasm) };
  const device = gpu.model.executor.device;
  try {
    await tokens(gpu, (n) => n === 2 && device.destroy());
    out.inFlight = "no error";
  } catch (err) {
    out.inFlight = { name: err.name, reason: err.reason, message: err.message, isDeviceError: err instanceof window.webrt.DeviceError };
  }
  out.wasmAfter = await tokens(wasm);
  if (breakReload) navigator.gpu.requestAdapter = async () => null;  // no adapter comes back
  try {
    out.after = await tokens(gpu);
    out.recovered = gpu.model.executor.device !== device;
  } catch (err) {
    out.after = { name: err.name, message: err.message };
  }
  gpu.unload();
  wasm.unload();
  return out;
}
"""


def test_device_lost_mid_generation_recovers_and_wasm_is_unaffected(tiny_chat_artifact):
    with shell_page(tiny_chat_artifact) as (page, url):
        out = page.evaluate(DEVICE_LOST_JS, [url, REQUEST, False])
    assert len(out["before"]) == REQUEST["max_tokens"]
    lost = out["inFlight"]
    assert lost["name"] == "DeviceLostError" and lost["reason"] == "destroyed" and lost["isDeviceError"], lost
    assert "device was lost while running decode (destroyed" in lost["message"]
    # the next request runs on a new device, from a fresh KV cache, and gives the same greedy tokens
    assert out["recovered"] and out["after"] == out["before"]
    assert out["wasmAfter"] == out["wasmBefore"]


def test_device_lost_without_a_new_device_says_reload(tiny_chat_artifact):
    with shell_page(tiny_chat_artifact) as (page, url):
        out = page.evaluate(DEVICE_LOST_JS, [url, REQUEST, True])
    assert out["inFlight"]["name"] == "DeviceLostError"
    assert out["after"]["name"] == "DeviceLostError", out["after"]
    assert "loading the model again failed (WebGPUUnavailableError" in out["after"]["message"]
    assert out["after"]["message"].endswith("reload the page")
    assert out["wasmAfter"] == out["wasmBefore"]


# A phone-sized adapter: every buffer limit reported as 64 KiB. Counts weight downloads.
SMALL_LIMITS_JS = """
async ([url]) => {
  for (const name of ["maxStorageBufferBindingSize", "maxBufferSize"]) {
    Object.defineProperty(GPUSupportedLimits.prototype, name, { get: () => 64 * 1024 });
  }
  try {
    await window.webrt.loadModel(url, { device: "webgpu", tuning: false });
    return { name: "loaded" };
  } catch (err) {
    const shards = performance.getEntriesByType("resource").filter((e) => e.name.includes("/weights/")).length;
    return { name: err.name, message: err.message, shards };
  }
}
"""

# The browser fails an allocation part way through the upload: createBuffer throws RangeError, as
# Chromium does when a mappedAtCreation buffer cannot be mapped.
FAILED_ALLOCATION_JS = """
async ([url]) => {
  const create = GPUDevice.prototype.createBuffer;
  let calls = 0;
  GPUDevice.prototype.createBuffer = function (descriptor) {
    if (descriptor.mappedAtCreation && ++calls === 3) throw new RangeError("createBuffer failed, size is too large");
    return create.call(this, descriptor);
  };
  const destroy = GPUDevice.prototype.destroy;
  let destroyed = 0;
  GPUDevice.prototype.destroy = function () { destroyed += 1; return destroy.call(this); };
  try {
    await window.webrt.loadModel(url, { device: "webgpu", tuning: false });
    return { name: "loaded" };
  } catch (err) {
    return { name: err.name, message: err.message, destroyed };
  }
}
"""


def test_model_over_the_buffer_limit_is_refused_before_download(tiny_chat_artifact):
    with shell_page(tiny_chat_artifact) as (page, url):
        out = page.evaluate(SMALL_LIMITS_JS, [url])
    assert out["name"] == "OutOfMemoryError", out
    assert "will not fit this GPU" in out["message"] and "allows 0.1 MiB" in out["message"]
    assert out["shards"] == 0


def test_failed_allocation_is_a_named_error_and_no_half_loaded_model(tiny_chat_artifact):
    with shell_page(tiny_chat_artifact) as (page, url):
        out = page.evaluate(FAILED_ALLOCATION_JS, [url])
    assert out["name"] == "OutOfMemoryError" and "could not allocate" in out["message"], out
    assert out["destroyed"] == 1  # the device, and every buffer made on it, is gone


STUCK_QUEUE_JS = "() => { GPUBuffer.prototype.mapAsync = () => new Promise(() => {}); }"


def test_stuck_gpu_queue_times_out_naming_the_stage(tiny_chat_artifact):
    with shell_page(tiny_chat_artifact) as (page, url):
        page.evaluate(STUCK_QUEUE_JS)
        with pytest.raises(DriverTimeout, match=r"forward pass 1 of 1 \(3 tokens\) did not finish in 45 s"):
            evaluate(page, _FORWARD_JS, [url, "webgpu", [[1, 2, 3]], None, False], timeout_s=45)
    assert issubclass(DriverTimeout, WebrtError) and DriverTimeout.exit_code == 1
