"""`webrt build-site` and `webrt serve` without a browser: the site's layout (relative, hashed,
self-contained, with integrity hashes), and the server's headers, Range, caching, refusal of
anything outside its root, loopback binding and a bounded load test."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.load_client import run_load, site_targets
from tests.serving import build_site, webrt, webrt_serve
from tests.test_bad_input import assert_one_line_error
from webrt.artifact import bake_tuning_db

HASHED = re.compile(r"\.[0-9a-f]{16}$")
URL = re.compile(r"\b(?:https?:)?//[A-Za-z0-9.-]+\.[a-z]{2,}")
# in the npm libraries, URLs that are never fetched: XML namespace names (DOMPurify) and marked's
# "Please report this to ..." error text
NOT_FETCHED = re.compile(r"http://www\.w3\.org/\d{4}/|report this to https://github\.com/markedjs/marked")
SECRET = "webrt-test-secret-outside-the-root"


@pytest.fixture(scope="module")
def site(tiny_chat_artifact, tmp_path_factory) -> Path:
    """A built site, plus a secret beside it and symlinks inside it that point at the secret."""
    root = tmp_path_factory.mktemp("serve")
    out = build_site([tiny_chat_artifact], root / "site")
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_text(SECRET)
    (out / "link-to-file.txt").symlink_to(root / "outside" / "secret.txt")
    (out / "link-to-dir").symlink_to(root / "outside")
    return out


@pytest.fixture(scope="module")
def served(site) -> str:
    with webrt_serve(site) as url:
        yield url


def request(url: str, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One GET with the path sent exactly as given (no client-side normalization of `..`)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    for name, value in (headers or {}).items():
        conn.putheader(name, value)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def site_index(site: Path) -> dict:
    return json.loads((site / "site.json").read_text())


def test_site_is_hashed_relative_and_self_contained(site, tiny_chat_artifact):
    index = site_index(site)
    assert HASHED.search(index["app"].rstrip("/"))
    assert all(HASHED.search(m["path"].rstrip("/")) for m in index["models"])
    # every file is under a content-hashed folder, except the two entry points
    files = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file() and not p.is_symlink()}
    unhashed = {f for f in files if not any(HASHED.search(part) for part in f.split("/")[:-1])}
    assert unhashed == {"index.html", "site.json"}
    # the integrity manifest covers every file (except itself) and matches its bytes
    assert set(index["integrity"]) == files - {"site.json"}
    for name, value in index["integrity"].items():
        assert value == "sha256-" + base64.b64encode(hashlib.sha256((site / name).read_bytes()).digest()).decode()
    # the model folder is the artifact, byte for byte
    model = site / index["models"][0]["path"]
    assert (model / "manifest.json").read_bytes() == (tiny_chat_artifact / "manifest.json").read_bytes()
    # no external URL: the page and our modules hold none; the npm libraries only in comments
    for path in site.rglob("*"):
        if path.suffix not in (".html", ".js", ".css", ".json", ".jinja") or path.is_symlink():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if URL.search(line):
                mentions = line.lstrip().startswith(("//", "*", "/*")) or not URL.search(NOT_FETCHED.sub("", line))
                assert "/vendor/" in path.as_posix() and mentions, (path, line)
    page = (site / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]*)"', page) + re.findall(r'": "(\./[^"]*)"', page)
    assert refs and all(r.startswith("./") or r == "data:," for r in refs), refs


def test_build_site_is_reproducible_and_replaces_an_older_site(tiny_chat_artifact, site, tmp_path):
    again = build_site([tiny_chat_artifact], tmp_path / "again")
    assert site_index(again)["integrity"] == {k: v for k, v in site_index(site)["integrity"].items()}
    rebuilt = build_site([tiny_chat_artifact], again)  # over an existing site: allowed
    assert site_index(rebuilt)["app"] == site_index(site)["app"]


def test_build_site_ships_the_artifacts_tuning_db(tiny_chat_artifact, tmp_path):
    tuned = Path(shutil.copytree(tiny_chat_artifact, tmp_path / "tuned"))
    db = json.dumps({"format": "webrt-tuning", "records": []}).encode()
    bake_tuning_db(tuned, db)
    site = build_site([tuned], tmp_path / "site")
    model = site_index(site)["models"][0]
    assert model["tuning_db"] == "tuning.json"
    assert (site / model["path"] / "tuning.json").read_bytes() == db
    assert f"{model['path']}tuning.json" in site_index(site)["integrity"]


def test_build_site_rejects_bad_input(tiny_chat_artifact, tmp_path):
    assert_one_line_error(webrt("build-site", "-o", str(tmp_path / "s")), "Missing argument")
    assert_one_line_error(webrt("build-site", str(tmp_path), "-o", str(tmp_path / "s")), "no manifest.json")
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep me")
    assert_one_line_error(webrt("build-site", str(tiny_chat_artifact), "-o", str(full)), "not empty")
    assert (full / "mine.txt").read_text() == "keep me"
    damaged = Path(shutil.copytree(tiny_chat_artifact, tmp_path / "damaged"))
    shard = damaged / "weights" / "shard-0000.bin"
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x00")
    assert_one_line_error(webrt("build-site", str(damaged), "-o", str(tmp_path / "s2")), "shard-0000.bin",
                          "does not match")
    assert not (tmp_path / "s2").exists()


def test_headers_mime_types_and_caching(site, served):
    index = site_index(site)
    model = index["models"][0]["path"]
    kernel = next((site / model / "kernels").glob("*.wgsl")).relative_to(site).as_posix()
    expected = {"/": "text/html", f"/{index['app']}engine.js": "text/javascript",
                f"/{model}manifest.json": "application/json", f"/{model}kernels/kernels.wasm": "application/wasm",
                f"/{kernel}": "text/wgsl", "/site.json": "application/json"}
    for path, mime in expected.items():
        status, headers, _ = request(served, path)
        assert status == 200, path
        assert headers["content-type"].split(";")[0] == mime, path
        assert headers["cross-origin-opener-policy"] == "same-origin"
        assert headers["cross-origin-embedder-policy"] == "require-corp"
        assert headers["cross-origin-resource-policy"] == "same-origin"
        assert headers["etag"]
        hashed = any(HASHED.search(folder) for folder in path.split("/")[:-1])
        assert headers["cache-control"] == ("public, max-age=31536000, immutable" if hashed else "no-cache"), path
    _, headers, _ = request(served, "/site.json")
    status, _, body = request(served, "/site.json", {"If-None-Match": headers["etag"]})
    assert status == 304 and body == b""
    status, headers, _ = request(served, f"/{index['app'].rstrip('/')}")
    assert status == 301 and headers["location"].endswith(f"/{index['app']}")  # relative URLs need the slash


def test_range_requests_get_206_with_the_right_bytes(site, served):
    model = site_index(site)["models"][0]["path"]
    data = (site / model / "weights" / "shard-0000.bin").read_bytes()
    path = f"/{model}weights/shard-0000.bin"
    status, headers, body = request(served, path, {"Range": "bytes=1000-1999"})
    assert status == 206 and body == data[1000:2000]
    assert headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    status, _, body = request(served, path, {"Range": "bytes=-100"})
    assert status == 206 and body == data[-100:]
    status, _, body = request(served, path, {"Range": f"bytes={len(data) - 10}-"})
    assert status == 206 and body == data[-10:]
    status, _, _ = request(served, path, {"Range": f"bytes={len(data) + 5}-"})
    assert status == 416


@pytest.mark.parametrize("path", [
    "/../outside/secret.txt", "/%2e%2e/outside/secret.txt", "/%2E%2E%2Foutside%2Fsecret.txt",
    "/app/..%2f..%2foutside/secret.txt", "/models/%2e%2e/%2e%2e/outside/secret.txt", "/..%5coutside%5csecret.txt",
    "/%252e%252e/outside/secret.txt", "/link-to-file.txt", "/link-to-dir/secret.txt", "//etc/passwd",
    "/.%2e/outside/secret.txt", "/%00/../outside/secret.txt",
])
def test_nothing_outside_the_root_is_served(served, path):
    status, _, body = request(served, path)
    assert status in (403, 404), (path, status)
    assert SECRET.encode() not in body and b"root:" not in body


def test_serve_binds_to_loopback_by_default(served):
    assert urlsplit(served).hostname == "127.0.0.1"
    port = urlsplit(served).port
    others = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
    for address in others:  # the machine's other addresses do not reach it
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=2).close()


def test_serve_runs_where_webrt_demo_left_its_site_folder(site, tmp_path):
    """CI's main job leaves ./webrt-site where it ran, and the tests then run there. A server whose
    Flask import name matched that folder failed to start (its root lookup found a namespace package)."""
    (tmp_path / "webrt-site").mkdir()
    (tmp_path / "relative" / "webrt-site").mkdir(parents=True)  # a relative sys.path entry too
    env = {**os.environ, "PYTHONPATH": "relative"}
    with webrt_serve(site, cwd=tmp_path, env=env) as url:
        status, _, body = request(url, "/")
    assert status == 200 and b"<html" in body.lower()


def test_serve_rejects_bad_input(site, served, tmp_path):
    assert_one_line_error(webrt("serve", str(tmp_path / "nope"), "--port", "0"), "is not a folder")
    port = str(urlsplit(served).port)
    assert_one_line_error(webrt("serve", str(site), "--port", port), f"port {port}", "--port 0")


def test_load_test_ends_without_errors(site, served):
    """The benchmark's run (bench/serve_load.py), bounded: 10,000 requests, 20 at a time."""
    result = run_load(served, site_targets(site), requests=10_000, concurrency=20)
    assert result["errors"] == 0, result["first_errors"]
