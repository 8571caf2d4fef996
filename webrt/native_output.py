"""Keep TVM's and LLVM's own messages out of the progress display.

TVM's C++ logging and LLVM write straight to file descriptor 2 ("Set native vector bits to be 128
for wasm32", once per wasm build), below Python's sys.stderr, so redirecting sys.stderr alone would
not catch them. `captured_native_stderr` points fd 2 at a temporary file for the duration and gives
Python's own stderr (rich's spinner, webrt's messages) a copy of the real descriptor, so only what
bypasses Python is held back; `webrt compile --verbose` shows it afterwards.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager


class Captured:
    text = ""  # what was written to fd 2, and Python warnings, once the block has ended


@contextmanager
def captured_native_stderr():
    """Capture fd 2 (and Python warnings) while the block runs; yields a Captured."""
    captured = Captured()
    sys.stderr.flush()
    saved_fd = os.dup(2)
    python_stderr = sys.stderr
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        os.dup2(sink.fileno(), 2)
        python_side = io.TextIOWrapper(os.fdopen(os.dup(saved_fd), "wb", buffering=0),
                                       encoding=python_stderr.encoding or "utf-8", errors="replace",
                                       line_buffering=True)
        sys.stderr = python_side
        try:
            yield captured
        finally:
            python_side.flush()
            sys.stderr = python_stderr
            python_side.close()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace") + "".join(
                warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
