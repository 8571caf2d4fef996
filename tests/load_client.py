"""A loopback HTTP load client for `webrt serve`: many GETs from a pool of threads, each checked
for its status and its exact bytes. The server test and bench/serve_load.py both use it."""

from __future__ import annotations

import http.client
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit


def run_load(base_url: str, targets: list[tuple[str, dict, int, bytes]], requests: int = 10_000,
             concurrency: int = 20) -> dict:
    """GET the targets round-robin, `requests` in all, `concurrency` at a time. A target is
    (path, headers, expected status, expected body). Returns counts, errors, latency and rate."""
    url = urlsplit(base_url)

    def one(i: int):
        path, headers, status, body = targets[i % len(targets)]
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
        except OSError as err:
            return time.perf_counter() - started, f"{path}: {err}"
        elapsed = time.perf_counter() - started
        if response.status != status or data != body:
            return elapsed, f"{path}: HTTP {response.status}, {len(data)} bytes (wanted {status}, {len(body)} bytes)"
        return elapsed, None

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    latencies = sorted(r[0] for r in results)
    errors = [r[1] for r in results if r[1]]
    return {
        "requests": requests, "concurrency": concurrency, "errors": len(errors), "first_errors": errors[:5],
        "seconds": round(wall, 2), "requests_per_s": round(requests / wall, 1),
        "latency_ms": {"p50": round(1000 * statistics.median(latencies), 2),
                       "p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
                       "max": round(1000 * latencies[-1], 2)},
    }


def site_targets(site, url_path: str = "/") -> list[tuple[str, dict, int, bytes]]:
    """A mix a visitor's browser makes: the page, site.json, app modules, a model manifest, a kernel,
    and a 64 KiB range of a weight shard."""
    import json

    index = json.loads((site / "site.json").read_text())
    app = index["app"]
    model = index["models"][0]["path"]
    shard = next((site / model / "weights").iterdir()).relative_to(site).as_posix()
    kernel = next((site / model / "kernels").glob("*.wgsl")).relative_to(site).as_posix()
    files = ["index.html", "site.json", f"{app}engine.js", f"{app}demo/chat.js", f"{app}vendor/jinja.js",
             f"{model}manifest.json", kernel]
    targets = [(url_path + f, {}, 200, (site / f).read_bytes()) for f in files]
    start = 1 << 20
    targets.append((url_path + shard, {"Range": f"bytes={start}-{start + 65535}"}, 206,
                    (site / shard).read_bytes()[start:start + 65536]))
    return targets
