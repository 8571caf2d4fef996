"""The webrt_web wheel (python/): webrt's engine from Python inside Pyodide, py3-none-any.

Built with the standard build backend (setuptools, from python/pyproject.toml) through its PEP 517
hook, not with pyodide-build: `pyodide build` always sets up a cross-build environment first, and
that is a download (see NOTES.md), while a pure-Python wheel needs no cross-compiling at all. The
sources are copied to a temporary folder first, so the backend's build/ and egg-info never land in
the checkout, and SOURCE_DATE_EPOCH is fixed, so the same sources give the same bytes: the site's
python.<hash>/ folder then keeps its hash (and its cached URLs) until the sources change."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import WebrtError
from .server import WEB_DIR

SOURCE = WEB_DIR.parent / "python"  # the repo's python/, beside web/ and node_modules/
# 1980-01-01, the earliest time a zip entry can hold: no build time leaks into the wheel
SOURCE_DATE_EPOCH = "315532800"
BUILD = "import sys, setuptools.build_meta as backend; print(backend.build_wheel(sys.argv[1]))"


def build_wheel() -> tuple[str, bytes]:
    """Build the wheel; returns (file name, bytes)."""
    if not (SOURCE / "pyproject.toml").is_file():
        raise WebrtError(f"{SOURCE}/pyproject.toml is missing: build-site --python needs webrt's source checkout")
    with tempfile.TemporaryDirectory(prefix="webrt-wheel-") as tmp:
        source = Path(tmp) / "src"
        shutil.copytree(SOURCE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
        out = Path(tmp) / "dist"
        env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
        result = subprocess.run([sys.executable, "-c", BUILD, str(out)], cwd=source, env=env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise WebrtError(f"building the webrt_web wheel failed: {result.stderr.strip().splitlines()[-1:]}")
        name = result.stdout.strip().splitlines()[-1]
        return name, (out / name).read_bytes()
