"""Run the `webrt` command as on a machine with only the main job's dependencies: torch and
transformers cannot be imported. The test extra installs both, and tvm_ffi imports torch whenever it
can, so a plain run here would not show that a fresh install (`pip install -e .`) works.

    python -m tests.without_torch compile -o OUT ...   (or run_webrt([...]) from a test)
"""

from __future__ import annotations

import importlib.abc
import subprocess
import sys
from pathlib import Path

BLOCKED = ("torch", "transformers")
REPO = Path(__file__).resolve().parents[1]


class BlockedImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by tests/without_torch.py)", name=name)
        return None


def run_webrt(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    """`webrt ARGS` in a subprocess with torch and transformers blocked; raises with its output on
    failure."""
    done = subprocess.run([sys.executable, "-m", "tests.without_torch", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"webrt {' '.join(args)} failed without torch (exit {done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


if __name__ == "__main__":
    sys.meta_path.insert(0, BlockedImports())  # an import of either now fails, as it would there
    from webrt.cli import main

    sys.argv[0] = "webrt"
    main()
