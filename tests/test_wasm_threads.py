"""The wasm backend's choices that a page's environment decides: which build and how many threads
(crossOriginIsolated or not, SIMD or not), and the refusal of a model too big for wasm32. They run
in Node on the shell's own modules, with the environment set per case."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parent.parent / "web"

SCRIPT = """
import { checkWasmFits, chooseWasmBuild } from "%(web)s/wasm_backend.js";
const [isolated, cores, threads, stateBytes] = JSON.parse(process.argv[1]);
globalThis.crossOriginIsolated = isolated;
Object.defineProperty(globalThis, "navigator", { value: { hardwareConcurrency: cores }, configurable: true });
const wasm = { file: "kernels/kernels.wasm", threads: { file: "kernels/kernels-threads.wasm" },
               scalar: { file: "kernels/kernels-scalar.wasm" } };
const out = {};
const choice = chooseWasmBuild(wasm, threads ?? undefined);
out.file = choice.build.file; out.threads = choice.threads; out.reason = choice.reason;
try {
  checkWasmFits({ weights: { tensors: [{ name: "w", shape: [1e8], bytes: 1e8 }] },
                 state: [{ shape: [stateBytes / 4], dtype: "float32" }] });
  out.fits = true;
} catch (err) {
  out.fits = false; out.error = `${err.name}: ${err.message}`;
}
console.log(JSON.stringify(out));
"""


def choose(isolated: bool, cores: int, threads: int | None, state_bytes: int = 1 << 20) -> dict:
    script = SCRIPT % {"web": WEB.as_posix()}
    result = subprocess.run(["node", "--input-type=module", "-e", script, json.dumps([isolated, cores, threads, state_bytes])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_threads_default_to_one_per_core_when_isolated():
    out = choose(isolated=True, cores=4, threads=None)
    assert (out["file"], out["threads"]) == ("kernels/kernels-threads.wasm", 4)


def test_not_isolated_falls_back_to_one_thread_and_says_why():
    out = choose(isolated=False, cores=4, threads=2)
    assert (out["file"], out["threads"]) == ("kernels/kernels.wasm", 1)
    assert "crossOriginIsolated" in out["reason"] and "COEP" in out["reason"]


@pytest.mark.parametrize("threads", [1, 3])
def test_requested_threads_are_used(threads):
    out = choose(isolated=True, cores=2, threads=threads)
    assert out["threads"] == threads
    assert out["file"] == ("kernels/kernels.wasm" if threads == 1 else "kernels/kernels-threads.wasm")


def test_model_larger_than_wasm32_memory_is_refused_with_a_way_out():
    assert choose(isolated=True, cores=2, threads=1)["fits"]
    out = choose(isolated=True, cores=2, threads=1, state_bytes=5 * 1024 ** 3)
    assert not out["fits"]
    # OutOfMemoryError (a DeviceError) names the limit and the ways out
    assert out["error"].startswith("OutOfMemoryError:") and "4 GiB" in out["error"] and "--context-window" in out["error"]
