"""The JS shell as users meet it: `webrt run --json`, and refusals of corrupt or incompatible artifacts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.models import reference_logits
from webrt.browser import shell_page

LOAD_JS = """
async (url) => {
  try { await window.webrt.loadModel(url); return "loaded"; }
  catch (err) { return `${err.name}: ${err.message}`; }
}
"""


def test_run_json_prints_logits_device_and_timings(llama_dir, llama_artifact):
    tokens = [5, 17, 300]
    result = subprocess.run([sys.executable, "-m", "webrt.cli", "run", str(llama_artifact), "--tokens",
                             ",".join(map(str, tokens)), "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["device"] == "webgpu"
    assert out["adapter"]["architecture"] == "swiftshader"
    assert set(out["timings"]) >= {"load_ms", "pipelines_ms", "forward_ms"}
    ours, ref = np.array(out["logits"]), reference_logits(llama_dir, tokens)
    assert np.abs(ours - ref).max() <= 1e-3 * np.abs(ref).max()


def load_in_browser(artifact: Path) -> str:
    with shell_page(artifact) as (page, url):
        return page.evaluate(LOAD_JS, url)


def test_shell_detects_a_corrupt_shard(llama_artifact, tmp_path):
    copy = Path(shutil.copytree(llama_artifact, tmp_path / "corrupt"))
    shard = copy / "weights" / "shard-0000.bin"
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF
    shard.write_bytes(data)
    message = load_in_browser(copy)
    assert message.startswith("IntegrityError: weights/shard-0000.bin is corrupt"), message


def test_shell_refuses_an_incompatible_format_version(llama_artifact, tmp_path):
    copy = Path(shutil.copytree(llama_artifact, tmp_path / "future"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 2
    (copy / "manifest.json").write_text(json.dumps(manifest))
    message = load_in_browser(copy)
    assert message.startswith("ArtifactFormatError: artifact format version 2"), message
