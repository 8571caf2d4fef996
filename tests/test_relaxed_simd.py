"""The relaxed-SIMD wasm builds (webrt/compile/wasm.py): written beside the plain ones when the
kernels have vector multiply-adds to fuse (f32x4.relaxed_madd), left out when they would be the
same bytes, chosen at load time where WebAssembly.validate accepts relaxed SIMD (Chromium here),
and checked against numpy with 1 and 2 threads, beside the plain builds forced on the same page."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import op

from webrt.artifact import write_artifact
from webrt.browser import shell_page
from webrt.compile import compile_module

WEB = Path(__file__).resolve().parent.parent / "web"
K, N = 96, 80
RELAXED_MADD = b"\xfd\x85\x02"  # f32x4.relaxed_madd: prefix 0xfd, LEB128 opcode 0x105


class Linear(nn.Module):
    def linear(self, x: nn.Tensor, w: nn.Tensor):
        return op.matmul(x, op.permute_dims(w))  # a symbolic count of tokens: the token-blocked matmul


class Add(nn.Module):
    def add(self, a: nn.Tensor, b: nn.Tensor):
        return a + b  # no multiply-add anywhere


def _compile(module: nn.Module, spec: dict):
    spec = {name: {**args, "$": {"param_mode": "none", "effect_mode": "none"}} for name, args in spec.items()}
    mod, _ = module.export_tvm(spec=spec)
    return compile_module(mod, {name: [a for a in args if a != "$"] for name, args in spec.items()}, candidates=False)


@pytest.fixture(scope="module")
def linear_artifact(tmp_path_factory):
    compiled = _compile(Linear(), {"linear": {"x": nn.spec.Tensor(["n", K], "float32"),
                                              "w": nn.spec.Tensor([N, K], "float32")}})
    return write_artifact(tmp_path_factory.mktemp("art") / "linear", {"name": "relaxed-checks"}, compiled, {})


def test_relaxed_builds_fuse_the_multiply_adds(linear_artifact):
    wasm = json.loads((linear_artifact / "manifest.json").read_text())["wasm"]
    for plain, relaxed in ((wasm, wasm["relaxed"]), (wasm["threads"], wasm["relaxed_threads"])):
        assert "relaxed-simd" in relaxed["features"] and "relaxed-simd" not in plain["features"]
        plain_code, relaxed_code = ((linear_artifact / r["file"]).read_bytes() for r in (plain, relaxed))
        assert RELAXED_MADD in relaxed_code and RELAXED_MADD not in plain_code
        assert relaxed["bytes"] == len(relaxed_code)


def test_no_relaxed_build_when_nothing_would_change():
    compiled = _compile(Add(), {"add": {"a": nn.spec.Tensor(["n", K], "float32"), "b": nn.spec.Tensor(["n", K], "float32")}})
    assert set(compiled.wasm) == {"simd", "threads", "scalar"}


PAGE_JS = """
async ([url, x, w, n]) => {
  const runs = [];
  for (const [threads, wasmBuild] of [[1, undefined], [2, undefined], [1, "simd"], [2, "threads"]]) {
    const model = await window.webrt.loadModel(url, { device: "wasm", threads, wasmBuild });
    const [out] = await model.run("linear", { x: { data: Float32Array.from(x), shape: [n, %(K)d] },
                                             w: { data: Float32Array.from(w), shape: [%(N)d, %(K)d] } }, { readback: [0] });
    runs.push({ build: model.wasmBuild, threads: model.threads, reason: model.threadsReason, data: Array.from(out.data) });
    model.unload();
  }
  return runs;
}
""" % {"K": K, "N": N}


def test_chosen_where_the_browser_validates_it_and_matches_numpy(linear_artifact):
    rng = np.random.default_rng(0)
    n = 37  # not a multiple of the token block: the padded tail
    x, w = rng.standard_normal((n, K), dtype=np.float32), rng.standard_normal((N, K), dtype=np.float32)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    with shell_page(linear_artifact) as (page, url):
        runs = page.evaluate(PAGE_JS, [url, x.ravel().tolist(), w.ravel().tolist(), n])
    assert [(r["build"], r["threads"]) for r in runs] == [("relaxed", 1), ("relaxed_threads", 2), ("simd", 1), ("threads", 2)]
    assert "relaxed SIMD" in runs[0]["reason"] and "relaxed SIMD" in runs[1]["reason"]
    outs = [np.array(r["data"], dtype=np.float32).reshape(n, N) for r in runs]
    for r, out in zip(runs, outs):
        err = np.abs(out - ref).max()
        assert err <= 1e-4 * np.abs(ref).max(), f"{r['build']}: max abs error {err}"
    # fused rounding changes the last bits: the relaxed builds must not be the plain ones run again
    assert not np.array_equal(outs[0], outs[2])
    np.testing.assert_array_equal(outs[0], outs[1])  # threads split the rows, not the sums
    np.testing.assert_array_equal(outs[2], outs[3])


CHOOSE_JS = """
import { chooseWasmBuild } from "%(web)s/wasm_backend.js";
const [isolated, threads, relaxedInBrowser, records, force] = JSON.parse(process.argv[1]);
globalThis.crossOriginIsolated = isolated;
Object.defineProperty(globalThis, "navigator", { value: { hardwareConcurrency: 2 }, configurable: true });
// a browser without relaxed SIMD rejects every module that uses it (Node 20 does so by default)
const validate = WebAssembly.validate;
const probes = { relaxed: 0 };
WebAssembly.validate = (bytes) => {
  const relaxed = Buffer.from(bytes).includes(Buffer.from([0xfd, 0x85, 0x02]));
  if (relaxed) probes.relaxed++;
  return relaxed ? relaxedInBrowser : validate(bytes);
};
const wasm = { file: "kernels.wasm", threads: { file: "kernels-threads.wasm" }, scalar: { file: "kernels-scalar.wasm" } };
for (const name of records) wasm[name] = { file: `kernels-${name}.wasm` };
try {
  const choice = chooseWasmBuild(wasm, threads ?? undefined, force ?? undefined);
  console.log(JSON.stringify({ file: choice.build.file, name: choice.name, threads: choice.threads, reason: choice.reason, probes }));
} catch (err) {
  console.log(JSON.stringify({ error: `${err.name}: ${err.message}` }));
}
"""

RELAXED = ["relaxed", "relaxed_threads"]


def choose(isolated=True, threads=None, relaxed_in_browser=True, records=RELAXED, force=None) -> dict:
    script = CHOOSE_JS % {"web": WEB.as_posix()}
    result = subprocess.run(["node", "--input-type=module", "-e", script,
                             json.dumps([isolated, threads, relaxed_in_browser, records, force])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("isolated, threads, expected", [
    (True, 1, ("relaxed", 1)), (True, None, ("relaxed_threads", 2)), (False, 2, ("relaxed", 1))])
def test_relaxed_builds_replace_the_plain_ones_where_validated(isolated, threads, expected):
    out = choose(isolated=isolated, threads=threads)
    assert (out["name"], out["threads"]) == expected and out["probes"]["relaxed"] >= 1
    assert out["file"] == f"kernels-{expected[0]}.wasm" and out["reason"].endswith("relaxed SIMD")


@pytest.mark.parametrize("relaxed_in_browser, records", [(False, RELAXED), (True, [])], ids=["browser-without", "artifact-without"])
def test_plain_builds_without_relaxed_simd(relaxed_in_browser, records):
    assert [(o["name"], o["threads"]) for o in (choose(threads=1, relaxed_in_browser=relaxed_in_browser, records=records),
                                                choose(threads=2, relaxed_in_browser=relaxed_in_browser, records=records))] \
        == [("simd", 1), ("threads", 2)]


def test_forcing_a_build_is_checked():
    assert choose(threads=1, force="simd")["name"] == "simd"
    assert (choose(threads=2, force="relaxed_threads")["threads"]) == 2
    assert choose(force="relaxed", relaxed_in_browser=False)["error"] == \
        "DeviceError: the relaxed build needs WebAssembly relaxed SIMD, which this browser does not have"
    assert choose(force="relaxed", records=[])["error"] == "DeviceError: the artifact has no relaxed wasm build"
    assert choose(force="relaxed_threads", isolated=False)["error"] == \
        "DeviceError: the relaxed_threads build needs a crossOriginIsolated page"
    assert "relaxed_threads" in choose(force="fma")["error"]
