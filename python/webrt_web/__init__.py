"""webrt's browser engine from Python, inside Pyodide. The model runs in the page's webrt JS shell,
in a Web Worker; Python awaits it, so a long reply never blocks the page.

    from webrt_web import create_engine
    engine = await create_engine("models/SmolLM2-135M-Instruct-q4f32.<hash>/")
    async for chunk in await engine.chat.completions.create(messages=[{"role": "user", "content": "Hi"}], stream=True):
        print(chunk["choices"][0]["delta"].get("content", ""), end="")

It needs Pyodide's `js` and `pyodide.ffi` only: no numpy, no TVM. The page registers the shell as the
JS module `webrt_shell` (see web/demo/python.js) before running Python.
"""

from .engine import Engine, create_engine
from .errors import WebrtError, error_class

__all__ = ["Engine", "WebrtError", "create_engine", "error_class"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # `from webrt_web import InputError`: the Python class of each of the JS shell's named errors
    if name.endswith("Error"):
        return error_class(name)
    raise AttributeError(f"module 'webrt_web' has no attribute {name!r}")
