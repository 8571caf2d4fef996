"""The engine from Python: the JS shell's worker engine (createWorkerEngine), reached through
Pyodide's FFI. Requests go in as keyword arguments and results come back as plain dicts and lists,
in OpenAI's shape; a streamed request is an async iterator of chunk dicts.

The API is not listed here but read from the JS engine: `engine.chat.completions.create`,
`engine.completions.create` and whatever the shell adds (embeddings, ...) are reached by attribute,
so a feature the JS engine gains works from Python unchanged. Python names in snake_case map to the
shell's camelCase (`reset_chat` -> `resetChat`)."""

from __future__ import annotations

import importlib

import js
from pyodide.ffi import JsException, JsProxy, create_proxy, jsnull, to_js

from .errors import error_class, from_js

SHELL_MODULE = "webrt_shell"  # the JS module the page registers: {createWorkerEngine, workerUrl}


def _js_object(value):
    """A Python value as JS data: dicts become plain objects (not Maps), lists arrays."""
    return to_js(value, dict_converter=js.Object.fromEntries)


def _py_data(value):
    """JS data as Python: objects become dicts, arrays lists, typed arrays (embeddings) lists."""
    if not isinstance(value, JsProxy):
        return value
    return _lists(value.to_py())


def _lists(value):
    if value is jsnull:
        return None
    if isinstance(value, memoryview):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lists(v) for v in value]
    return value


async def _call(function, *args):
    """Call a JS function and await its promise; a JS error comes out as the named Python error."""
    try:
        result = function(*args)
        if hasattr(result, "then"):
            result = await result
        return result
    except JsException as err:
        raise from_js(err) from None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _unloaded():
    return error_class("EngineStateError")("the engine was unloaded; create a new one")


class Stream:
    """A streamed reply: `async for chunk in stream` gives each chunk as a dict."""

    def __init__(self, iterator: JsProxy):
        self._iterator = iterator

    def __aiter__(self):
        return self

    async def __anext__(self) -> dict:
        step = await _call(self._iterator.next)
        if step.done:
            raise StopAsyncIteration
        return _py_data(step.value)


class Api:
    """One part of the JS engine's API (engine.chat, engine.chat.completions, ...). An attribute that
    is a JS function becomes an async method: keyword arguments are its request object."""

    def __init__(self, engine: Engine, target: JsProxy, path: str):
        self._engine = engine
        self._target = target
        self._path = path

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._engine.unloaded:
            raise _unloaded()
        path = f"{self._path}.{name}"
        value = getattr(self._target, _camel(name), None)
        if value is None:
            raise AttributeError(f"the webrt engine has no {path} (the JS shell on this page does not offer it)")
        if callable(value):
            return self._engine._method(value, path)
        return Api(self._engine, value, path)

    def __dir__(self):
        return [_snake(name) for name in js.Object.keys(self._target)]

    def __repr__(self):
        return f"<webrt engine API {self._path}>"


class Engine(Api):
    """A loaded model. `info` says which backend runs it and why (a dict, as the JS engine's)."""

    def __init__(self, remote: JsProxy):
        self.unloaded = False  # first: attribute look-ups (Api.__getattr__) read it
        super().__init__(self, remote, "engine")
        self.info = _py_data(remote.info)
        self.js_engine = remote  # the JS worker engine itself, for JS code on the page

    def _method(self, function, path: str):
        async def method(**request):
            if self.unloaded:
                raise _unloaded()
            result = await _call(function, _js_object(request)) if request else await _call(function)
            if isinstance(result, JsProxy) and hasattr(result, "next"):  # a streamed reply's async iterator
                return Stream(result)
            return _py_data(result)

        method.__name__ = path.rsplit(".", 1)[-1]
        method.__qualname__ = path
        return method

    async def unload(self) -> None:
        """Free the model and end its Worker; the engine cannot be used afterwards."""
        if not self.unloaded:
            self.unloaded = True
            await _call(self._target.unload)


def _shell(shell):
    if shell is not None:
        return shell
    try:
        return importlib.import_module(SHELL_MODULE)
    except ImportError:
        raise error_class("WebrtError")(
            f"the webrt JS shell is not registered: the page must call pyodide.registerJsModule("
            f"\"{SHELL_MODULE}\", {{createWorkerEngine, workerUrl}}) before Python runs (see web/demo/python.js), "
            "or pass shell=") from None


async def create_engine(url: str, device: str = "auto", threads: int | None = None, on_progress=None,
                        shell=None, **options) -> Engine:
    """Load the compiled model at url (an artifact folder, relative to the page) into a JS engine in
    a new Web Worker. device: "auto", "webgpu" or "wasm"; threads: wasm threads (default one per
    core); on_progress(dict) sees the load's stages; other options go to the JS engine as they are
    (cache, tuning, contextPolicy, ...)."""
    shell = _shell(shell)
    options = {"device": device, **({"threads": threads} if threads is not None else {}), **options}
    progress = create_proxy(lambda p: on_progress(_py_data(p))) if on_progress else None
    if progress is not None:
        options["onProgress"] = progress
    try:
        worker = js.Worker.new(shell.workerUrl, _js_object({"type": "module"}))
        try:
            remote = await _call(shell.createWorkerEngine, worker, url, _js_object(options))
        except BaseException:
            worker.terminate()
            raise
    finally:
        if progress is not None:
            progress.destroy()
    return Engine(remote)
