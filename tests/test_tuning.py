"""Schedule tuning (webrt/compile/tuning.py, web/tuner.js, webrt tune): a wrong candidate never wins,
stored winners make a second load time nothing, a tuning DB baked into the artifact is used by a
fresh browser profile, and tuning stops at its budget. Greedy tokens stay the same with the winners.

All on the tiny chat model (hidden 64, 2 layers) on WebGPU (SwiftShader here)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.test_bad_input import assert_one_line_error, webrt
from webrt.artifact import sha256
from webrt.browser import shell_page
from webrt.build_artifact import compile_model
from webrt.tune import measure
from tests.models import make_tiny_chat_model

DECODE_ONLY = {"entries": ["decode"], "force": True}


@pytest.fixture
def artifact(tiny_chat_artifact, tmp_path):
    """A private copy: tests bake DBs into it and edit kernels."""
    return shutil.copytree(tiny_chat_artifact, tmp_path / "art")


def _decode_function_with_candidates(manifest: dict) -> str:
    calls = [s["func"] for s in manifest["entries"]["decode"]["steps"] if s["op"] == "call"]
    return next(f for f in calls if manifest["functions"][f].get("candidates"))


def test_compile_ships_candidates_that_build(tiny_chat_artifact):
    manifest = json.loads((tiny_chat_artifact / "manifest.json").read_text())
    tuned = {name: f["candidates"] for name, f in manifest["functions"].items() if f.get("candidates")}
    assert len(tuned) >= 4  # q/k/v/o, MLP and lm_head matmuls, attention scores
    for name, candidates in tuned.items():
        assert 1 <= len(candidates) <= 24
        for c in candidates:
            for launch in c["launches"]:
                kernel = manifest["kernels"][launch["kernel"]]
                assert kernel["candidate"] is True
                assert (tiny_chat_artifact / kernel["file"]).is_file()
    # a candidate never replaces a default kernel: loads without tuning fetch none of them
    defaults = {l["kernel"] for f in manifest["functions"].values() for l in f["launches"]}
    assert not any(manifest["kernels"][k].get("candidate") for k in defaults)
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["tuning"]["space"]) and manifest["tuning"]["db"] is None


def test_wrong_candidate_is_rejected(artifact):
    """One candidate is edited to return at once: the fastest kernel there is, and wrong."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    func = _decode_function_with_candidates(manifest)
    victim = manifest["functions"][func]["candidates"][0]
    kernel = manifest["kernels"][victim["launches"][0]["kernel"]]
    path = artifact / kernel["file"]
    wgsl = path.read_text()
    guard = "if (blockIdx.z * gridDim.x + blockIdx.x > podArgs.packGridDimX) { return; }"
    assert guard in wgsl
    path.write_text(wgsl.replace(guard, "if (blockIdx.x < 65536u) { return; }"))
    kernel["sha256"] = sha256(path.read_bytes())
    (artifact / "manifest.json").write_text(json.dumps(manifest))

    with shell_page(artifact) as (page, url):
        result = measure(page, url, "webgpu", {"budget_s": 20, **DECODE_ONLY}, 4, 2)
    report = result["tuning"]["functions"][func]
    assert report["rejected"][victim["id"]].startswith("wrong output"), report
    assert result["tuning"]["winners"].get(func) != victim["id"]
    assert result["tuning"]["candidates_timed"] > 0


@pytest.mark.parametrize("device", ["webgpu", "wasm"])
def test_second_load_uses_stored_winners(artifact, device):
    with shell_page(artifact) as (page, url):
        default = measure(page, url, device, False, 8, 4)
        first = measure(page, url, device, {"budget_s": 20, "entries": ["decode"]}, 8, 4)
        second = measure(page, url, device, True, 8, 4)
    assert first["tuning"]["source"] == "tuned" and first["tuning"]["candidates_timed"] > 0
    if device == "webgpu":  # register blocking beats one thread per output on SwiftShader
        assert first["tuning"]["winners"], "no candidate beat the default schedule on SwiftShader"
    assert second["tuning"]["source"] == "indexeddb"
    assert second["tuning"]["candidates_timed"] == 0
    assert second["tuning"]["winners"] == first["tuning"]["winners"]
    # parity: the winners compute the same greedy tokens as the compile-time schedules
    assert first["tokens"] == default["tokens"] == second["tokens"]


def test_tuning_db_baked_into_artifact_is_used_by_a_fresh_profile(artifact, tmp_path):
    db_file = tmp_path / "db.json"
    result = webrt("tune", str(artifact), "--budget", "15", "--prefill", "4", "--steps", "2",
                   "--db-out", str(db_file), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["candidates_timed"] > 0 and report["speedup"] > 0 and report["seconds"] <= 15 * 1.5 + 2
    assert all({"default_ms", "best_ms"} <= set(k) for k in report["kernels"].values())
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["tuning"]["db"] == "tuning.json"
    assert any(f["file"] == "tuning.json" for f in manifest["files"])
    # a new browser profile: nothing in IndexedDB, the artifact's DB gives the winners
    with shell_page(artifact) as (page, url):
        fresh = measure(page, url, "webgpu", True, 4, 2)
    assert fresh["tuning"]["source"] == "artifact"
    assert fresh["tuning"]["candidates_timed"] == 0
    assert fresh["tuning"]["winners"] == report["winners"]

    # the same DB baked in at compile time (webrt compile --tuning-db) is found as well
    recompiled = compile_model(make_tiny_chat_model(tmp_path / "hf"), tmp_path / "recompiled", tuning_db=db_file)
    with shell_page(recompiled) as (page, url):
        baked = measure(page, url, "webgpu", "auto", 4, 2)
    assert baked["tuning"]["source"] == "artifact" and baked["tuning"]["winners"] == report["winners"]


def test_tuning_respects_its_budget(artifact):
    with shell_page(artifact) as (page, url):
        short = measure(page, url, "webgpu", {"budget_s": 1, "force": True}, 4, 2)
    tuning = short["tuning"]
    assert tuning["seconds"] <= 1 * 1.5 + 1.5, tuning["seconds"]
    manifest = json.loads((artifact / "manifest.json").read_text())
    with_candidates = {f for f, r in manifest["functions"].items() if r.get("candidates")}
    # not every function fits in a second of SwiftShader time
    assert len(tuning["functions"]) < len(with_candidates)


def test_bad_tuning_input(tiny_chat_artifact, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    assert_one_line_error(webrt("compile", str(tiny_chat_artifact), "-o", str(tmp_path / "x"), "--tuning-db", str(bad)),
                          "--tuning-db", "not a webrt tuning database")
    assert_one_line_error(webrt("run", str(tiny_chat_artifact), "--tokens", "1", "--tuning-budget", "5"),
                          "--tuning-budget needs --tuning on")


# Chromium's SwiftShader has no watchdog to trip, so the loss is simulated where it would hurt:
# the device is destroyed while a candidate's pipeline is being created.
_LOSE_DEVICE_JS = """
() => {
  const create = GPUDevice.prototype.createComputePipelineAsync;
  window.webrtLost = 0;
  GPUDevice.prototype.createComputePipelineAsync = function (descriptor) {
    if (window.webrtLost === 0 && /__c2_kernel/.test(descriptor.label ?? "")) {
      window.webrtLost += 1;
      this.destroy();
    }
    return create.call(this, descriptor);
  };
}
"""


def test_tuning_survives_a_lost_device(artifact):
    with shell_page(artifact) as (page, url):
        default = measure(page, url, "webgpu", False, 4, 3)
        page.evaluate(_LOSE_DEVICE_JS)
        tuned = measure(page, url, "webgpu", {"budget_s": 20, **DECODE_ONLY}, 4, 3)
        assert page.evaluate("window.webrtLost") == 1
    rejected = {f: r["rejected"] for f, r in tuned["tuning"]["functions"].items()}
    lost = [(f, cid) for f, r in rejected.items() for cid, why in r.items() if "device was lost" in why]
    # the candidate whose pipeline was being created is blamed (with any created at the same time)
    assert any(cid == "c2" for _, cid in lost) and len({f for f, _ in lost}) == 1, rejected
    assert tuned["tuning"]["source"] == "tuned" and tuned["tokens"] == default["tokens"]
