"""The JS shell's named errors (web/errors.js) as Python exceptions, with the same name and message.

Each JS name gets one Python class, a subclass of WebrtError, made on first use: a name the shell adds
later (a new engine feature's error) needs no change here. `str(err)` is the JS message exactly."""

from __future__ import annotations

from pyodide.ffi import JsException


class WebrtError(Exception):
    """An error the webrt engine raised in JS; `name` is its JS class name."""

    name = "WebrtError"


_classes: dict[str, type[WebrtError]] = {"WebrtError": WebrtError}


def error_class(name: str) -> type[WebrtError]:
    if name not in _classes:
        _classes[name] = type(name, (WebrtError,), {"name": name, "__module__": __name__})
    return _classes[name]


def from_js(err: JsException) -> WebrtError:
    """The Python exception for a JS error that crossed into Python."""
    js_error = getattr(err, "js_error", None)
    name = str(getattr(js_error, "name", None) or "WebrtError")
    message = getattr(js_error, "message", None)
    if message is None:  # not an Error object: Pyodide's text is "Name: message"
        message = str(err).removeprefix(f"{name}: ")
    return error_class(name)(str(message))
