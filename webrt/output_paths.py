"""Output paths refused before any work: a verb that would fail to write its result finds out
first, not after minutes of compiling or measuring."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from .errors import WebrtError


def check_writable(out: Path, what: str = "the output") -> None:
    """Refuse out when it cannot be created: a file stands where a parent folder would go, or the
    nearest existing folder above it is not writable (probed by making and removing a folder in it,
    which also catches read-only mounts and immutable folders that permission bits do not show)."""
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise WebrtError(f"cannot write {what} {out}: {parent} is a file, not a folder")
    try:
        shutil.rmtree(tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent))
    except OSError as err:
        raise WebrtError(f"cannot write {what} {out} ({err.strerror} in {parent}): "
                         "choose a folder you can write to") from None


def check_output_folder(out: Path, marker: str, fmt: str, what: str) -> None:
    """Refuse out before any work when it is a file, a non-empty folder that holds no earlier
    output of this kind (its `marker` JSON file with format `fmt`), or cannot be written."""
    if out.exists() and not out.is_dir():
        raise WebrtError(f"output {out} is a file: give a folder path for the {what}")
    if out.is_dir() and any(out.iterdir()) and not holds_format(out / marker, fmt):
        raise WebrtError(f"output folder {out} is not empty and holds no webrt {what}: "
                         "choose an empty or new folder, so nothing of yours is overwritten")
    check_writable(out, f"the {what}")


def holds_format(path: Path, fmt: str) -> bool:
    """Whether path is a JSON object with "format": fmt (a webrt manifest or site.json)."""
    try:
        return json.loads(path.read_text()).get("format") == fmt
    except (OSError, ValueError, AttributeError):
        return False
