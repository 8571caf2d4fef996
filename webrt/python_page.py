"""`webrt build-site --python`: the Python page (web/demo/python.html) and what it loads, all from
the site itself:

    SITE/python.html                     the Python page (a code cell that runs in Pyodide)
    SITE/python.<hash>/pyodide/          Pyodide's core, from the npm `pyodide` package
    SITE/python.<hash>/webrt_web-….whl   the webrt_web wheel (python/, built by python_wheel.py)

The page itself (python.js, python.css) is in the app folder with the chat page's modules."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import WebrtError
from .python_wheel import build_wheel
from .server import NODE_MODULES

PYODIDE = NODE_MODULES / "pyodide"
# Pyodide's core: its loader and runtime, the stdlib, and the lock file loadPyodide reads (it names
# Pyodide's own packages, none of which the site ships or needs)
PYODIDE_CORE = ["pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json"]
PAGE = "python.html"


def python_files() -> tuple[dict[str, bytes], str, str]:
    """The python folder's files ({name: bytes}), the wheel's name and Pyodide's version."""
    missing = [name for name in PYODIDE_CORE if not (PYODIDE / name).is_file()]
    if missing:
        raise WebrtError(f"pyodide is not installed ({PYODIDE}/{missing[0]} is missing): run `npm ci` in the webrt folder")
    files = {f"pyodide/{name}": (PYODIDE / name).read_bytes() for name in PYODIDE_CORE}
    wheel, data = build_wheel()
    files[wheel] = data
    version = json.loads((PYODIDE / "package.json").read_text())["version"]
    return files, wheel, version


def write_python_page(staging: Path, app: str, app_source: dict[str, bytes]) -> tuple[dict, dict[str, str]]:
    """Write the python folder and python.html into staging; returns site.json's `python` entry and
    the integrity of the files written."""
    from .site import HASH_CHARS, content_hash, render_page, sri

    files, wheel, version = python_files()
    folder = f"python.{content_hash(files)[:HASH_CHARS]}/"
    for name, data in files.items():
        (staging / folder / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / folder / name).write_bytes(data)
    integrity = {folder + name: sri(data) for name, data in files.items()}
    page = render_page(app, app_source, "demo/python.html", script="demo/python.js",
                       modules={folder + name: data for name, data in files.items() if name.endswith(".mjs")},
                       python=f"./{folder}", wheel=wheel, python_css=sri(app_source["demo/python.css"]))
    (staging / PAGE).write_bytes(page)
    integrity[PAGE] = sri(page)
    return {"page": PAGE, "path": folder, "wheel": wheel, "pyodide": version}, integrity
