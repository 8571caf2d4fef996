"""A small Flask app that serves the JS shell and artifact folders to a browser.

`/shell/...` is the JS shell (web/); `/model/...` is an artifact folder. Responses carry the
cross-origin isolation headers wasm threads need, and the MIME types browsers insist on.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, send_from_directory
from werkzeug.serving import make_server

WEB_DIR = (Path(__file__).parent / "web").resolve()  # the repo's web/, through the package link
# the shell's npm dependencies (tokenizer, template engine), installed by `npm ci` at the repo root
NODE_MODULES = WEB_DIR.parent / "node_modules"
MIME_TYPES = {".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript",
              ".json": "application/json", ".wgsl": "text/wgsl"}
for _suffix, _mime in MIME_TYPES.items():  # send_from_directory picks the type from mimetypes
    mimetypes.add_type(_mime, _suffix)


def create_app(artifact_dir: Path) -> Flask:
    app = Flask("webrt", static_folder=None)

    @app.get("/shell/<path:name>")
    def shell(name):
        return send_from_directory(WEB_DIR, name)

    @app.get("/node_modules/<path:name>")
    def node_modules(name):
        return send_from_directory(NODE_MODULES, name)

    @app.get("/model/<path:name>")
    def model(name):
        return send_from_directory(artifact_dir.resolve(), name)

    @app.after_request
    def headers(response):
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Cross-Origin-Embedder-Policy"] = "require-corp"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        return response

    return app


@contextmanager
def serve_in_background(app: Flask, host: str = "127.0.0.1", port: int = 0):
    """Run the app on a thread; yields its base URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
