"""Servers for the site tests, each in its own process as a user would start it: `webrt serve` and
Python's plain static server (no COOP/COEP, no Range)."""

from __future__ import annotations

import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path


def webrt(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webrt.cli", *args], capture_output=True, text=True, timeout=timeout)


def build_site(artifacts: list[Path], out: Path) -> Path:
    result = webrt("build-site", *map(str, artifacts), "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


@contextmanager
def _process(args: list[str], first_line: re.Pattern, **popen):
    """Start a server process; yields the match of its first stdout line (its address)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    try:
        line = proc.stdout.readline()
        match = first_line.search(line)
        assert match, f"no address from {args}: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        yield match
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def webrt_serve(root: Path, *args: str, **popen):
    """`webrt serve ROOT --port 0`; yields the URL it prints. popen: cwd, env for the process."""
    with _process([sys.executable, "-m", "webrt.cli", "serve", str(root), "--port", "0", *args],
                  re.compile(r"^(http://\S+/)$"), **popen) as match:
        yield match.group(1)


@contextmanager
def plain_static_server(root: Path):
    """`python -m http.server` on root; yields its base URL (no trailing slash)."""
    with _process([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(root)],
                  re.compile(r"port (\d+)")) as match:
        yield f"http://127.0.0.1:{match.group(1)}"
