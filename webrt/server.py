"""Small Flask apps that serve webrt's files to a browser.

- `create_app(artifact)`: the JS shell at /shell/ and one artifact at /model/, for `webrt run`,
  `webrt generate` and the tests.
- `create_site_app(root)`: a static folder as it is (a site from `webrt build-site`), for `webrt serve`.

Every response carries the cross-origin isolation headers wasm threads need (without them the page
is not `crossOriginIsolated` and SharedArrayBuffer is off), and the MIME types browsers insist on.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, abort, redirect, request, send_file, send_from_directory
from werkzeug.security import safe_join
from werkzeug.serving import make_server

from .errors import WebrtError

WEB_DIR = (Path(__file__).parent / "web").resolve()  # the repo's web/, through the package link
# the shell's npm dependencies (tokenizer, template engine), installed by `npm ci` at the repo root
NODE_MODULES = WEB_DIR.parent / "node_modules"
MIME_TYPES = {".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript",
              ".json": "application/json", ".wgsl": "text/wgsl"}
for _suffix, _mime in MIME_TYPES.items():  # send_file picks the type from mimetypes
    mimetypes.add_type(_mime, _suffix)

# A content hash in a file or folder name (`app.<16 hex>/`, `models/x.<16 hex>/`, `a.<16 hex>.js`):
# such a URL never changes content, so browsers may keep it for a year without asking again.
HASHED_NAME = re.compile(r"\.[0-9a-f]{16}(?:/|\.|$)")
IMMUTABLE = "public, max-age=31536000, immutable"
# Everything else (index.html, site.json, manifest.json) is revalidated with its ETag on every use.
REVALIDATE = "no-cache"


def _isolation_headers(app: Flask) -> None:
    @app.after_request
    def headers(response):
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Cross-Origin-Embedder-Policy"] = "require-corp"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def create_app(artifact_dir: Path) -> Flask:
    # __name__, not a free-form name: Flask looks its import name up as a module to find its root, and
    # a name that matches a folder on sys.path (`webrt demo` writes ./webrt-site) breaks that lookup
    app = Flask(__name__, static_folder=None)

    @app.get("/shell/<path:name>")
    def shell(name):
        return send_from_directory(WEB_DIR, name)

    @app.get("/node_modules/<path:name>")
    def node_modules(name):
        return send_from_directory(NODE_MODULES, name)

    @app.get("/model/<path:name>")
    def model(name):
        return send_from_directory(artifact_dir.resolve(), name)

    _isolation_headers(app)
    return app


def inside(root: Path, name: str) -> Path:
    """The file `name` names under root; 403 for anything that could reach outside it.

    `..` is refused outright (not normalized away), whatever encoding it arrived in: the WSGI server
    has already percent-decoded the path, so `%2e%2e` and `..%2f` show up here as `..`. Symlinks
    are followed and must land inside root too.
    """
    parts = name.split("/")
    if ".." in parts or "\\" in name or "\0" in name:
        abort(403)
    if any(part.startswith(".") for part in parts):  # .git, .partial-*: never part of a site
        abort(404)
    joined = safe_join(str(root), name)
    if joined is None:  # absolute paths, drive letters
        abort(403)
    path = Path(joined).resolve()
    if path != root and root not in path.parents:
        abort(403)
    return path


def create_site_app(root: Path) -> Flask:
    """Serve the folder `root` read-only: index.html for folders, Range and ETag requests,
    long-lived caching for content-hashed names."""
    root = root.resolve()
    app = Flask(__name__, static_folder=None)  # see create_app for why __name__

    @app.get("/", defaults={"name": ""})
    @app.get("/<path:name>")
    def site(name):
        path = inside(root, name)
        if path.is_dir():
            if name and not request.path.endswith("/"):
                # the page's relative URLs resolve against the folder only with the slash
                return redirect(request.path + "/", code=301)
            path = inside(root, f"{name.rstrip('/')}/index.html".lstrip("/"))
        if not path.is_file():
            abort(404)
        # conditional=True: If-None-Match / If-Modified-Since give 304, Range gives 206
        response = send_file(path, conditional=True, etag=True)
        response.headers["Cache-Control"] = IMMUTABLE if HASHED_NAME.search(request.path) else REVALIDATE
        return response

    _isolation_headers(app)
    return app


def make_site_server(root: Path, host: str = "127.0.0.1", port: int = 0):
    """A threaded WSGI server for the folder root, not yet serving; `site_url(server)` is its URL."""
    if not root.is_dir():
        raise WebrtError(f"{root} is not a folder: give the folder to serve (e.g. one from `webrt build-site`)")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    # bind here rather than in werkzeug, which prints its own message and exits when the port is taken
    with _listening_socket(host, port) as sock:
        return make_server(host, port, create_site_app(root), threaded=True, fd=sock.fileno())


def check_can_listen(host: str, port: int) -> None:
    """Refuse a host and port that cannot be listened on, before any work (`webrt demo`)."""
    with _listening_socket(host, port):
        pass


@contextmanager
def _listening_socket(host: str, port: int):
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind)
    except OSError as err:
        raise WebrtError(f"cannot listen on {host} port {port} ({err.strerror}): give a valid --host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise WebrtError(f"cannot listen on {host} port {port} ({err.strerror}): choose another --port, "
                         "or --port 0 for a free one") from None
    with sock:
        yield sock


def site_url(server) -> str:
    host = server.host if ":" not in server.host else f"[{server.host}]"
    return f"http://{host}:{server.socket.getsockname()[1]}/"  # the port chosen when asked for 0


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
