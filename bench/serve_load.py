"""Load test of `webrt serve`: 10,000 GETs from a loopback client, 20 at a time, on a site built from
the default model (the page, site.json, app modules, a manifest, a kernel, 64 KiB ranges of a shard).
Every response is checked for its status and exact bytes.

    python bench/serve_load.py      # writes bench/serve_load.json and bench/serve_load.md

Not a timed test: the load average is recorded with the numbers (other work shares the machine).
tests/test_serve.py runs the same load and asserts 0 errors.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.load_client import run_load, site_targets  # noqa: E402
from tests.serving import webrt_serve  # noqa: E402
from webrt.build_artifact import compile_model  # noqa: E402
from webrt.site import build_site  # noqa: E402

REQUESTS = 10_000
CONCURRENCY = 20


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        artifact = compile_model(None, Path(work) / "smollm2", "q4f32", 512)
        site = build_site([artifact], Path(work) / "site")
        load_before = os.getloadavg()
        with webrt_serve(site) as url:
            result = run_load(url, site_targets(site), REQUESTS, CONCURRENCY)
        load_after = os.getloadavg()
    result.update(command="python bench/serve_load.py", server="webrt serve (werkzeug threaded, HTTP/1.1)",
                  client="Python threads, http.client, one connection per request",
                  load_average_before=[round(x, 2) for x in load_before],
                  load_average_after=[round(x, 2) for x in load_after],
                  cpus=os.cpu_count(), date=time.strftime("%Y-%m-%d %H:%M"))
    (ROOT / "bench" / "serve_load.json").write_text(json.dumps(result, indent=1) + "\n")
    lat = result["latency_ms"]
    (ROOT / "bench" / "serve_load.md").write_text(f"""# `webrt serve` load test ({result['date']})

Command: `{result['command']}`. A site built from the default model, served by `webrt serve` on
127.0.0.1; {REQUESTS:,} GETs from {CONCURRENCY} client threads on the same machine ({result['cpus']} CPUs), a mix
of the page, site.json, app modules, a model manifest, a WGSL kernel and 64 KiB Range requests on a
weight shard; every response checked for status and exact bytes.
Load average before: {', '.join(map(str, result['load_average_before']))}; after: {', '.join(map(str, result['load_average_after']))} (other jobs share this machine).

| requests | concurrency | errors | seconds | requests/s | p50 ms | p99 ms | max ms |
|---|---|---|---|---|---|---|---|
| {REQUESTS:,} | {CONCURRENCY} | {result['errors']} | {result['seconds']} | {result['requests_per_s']} | {lat['p50']} | {lat['p99']} | {lat['max']} |
""")
    print(json.dumps(result, indent=1))
    if result["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
