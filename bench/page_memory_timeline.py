"""The page's memory over time while webrt loads an artifact on wasm and generates 32 tokens:
the renderer's PSS every 0.2 s (bench/gemma3_wllama.py's sampler) beside the page's own log of
its load stages with the JS heap (performance.memory, precise), so a peak can be placed in the
load. Used for bench/gemma3_wllama.md's notes (where the load's garbage went).

    python bench/page_memory_timeline.py ARTIFACT [THREADS, e.g. 1,2]

Not a timed test; one run per thread count.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import gemma3_wllama as bench  # noqa: E402
import webrt.browser as browser  # noqa: E402
from webrt.bench.native import PROMPT_TEXT  # noqa: E402
from webrt.server import create_app, serve_in_background  # noqa: E402

# the JS heap to the byte, not in Chromium's coarse buckets
browser.CHROMIUM_FLAGS = [*browser.CHROMIUM_FLAGS, "--enable-precise-memory-info"]
LOG_EVERY = 64 << 20  # download bytes between log lines


class Timeline(bench.MemorySampler):
    """The sampler, keeping every sample (seconds since reset, page PSS MiB) and the marks."""

    def reset(self):
        super().reset()
        self.t0, self.samples = time.time(), []

    def _take(self):
        now = super()._take()
        self.samples.append((round(time.time() - self.t0, 2), now["page_pss"] >> 20))
        return now

    def mark(self, name):
        super().mark(name)
        self.samples.append((round(time.time() - self.t0, 2), name))


PAGE_JS = """
async ([url, threads, prompt, logEvery], stage) => {
  const log = [];
  const t0 = performance.now();
  const note = (what) => log.push([Math.round(performance.now() - t0), what, Math.round(performance.memory.usedJSHeapSize / 2 ** 20)]);
  let last = "";
  const onProgress = (p) => {
    const step = p.loaded !== undefined && p.loaded % logEvery < (1 << 20);
    if (p.stage !== last || step) note(p.stage + (p.loaded ? ` ${p.loaded >> 20} MiB` : ""));
    last = p.stage;
  };
  const engine = await window.webrt.createEngine(url, { device: "wasm", threads, onProgress });
  note("engine");
  await window.benchMark("loaded");
  const ids = engine.tokenizer.encodePrompt(prompt);
  const gen = new window.webrt.Generator(engine.model);
  const sampler = new window.webrt.Sampler({ temperature: 0 }, ids);
  let { token } = await gen.prefill(ids, sampler);
  for (let i = 1; i < 32; i++) {
    sampler.accept(token);
    token = await gen.decode(token, sampler);
  }
  note("decoded");
  await window.benchMark("decoded");
  engine.unload();
  return { log };
}
"""


def main(artifact: Path, threads: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        (site / "a").symlink_to(artifact.resolve())
        sampler = Timeline()
        try:
            with serve_in_background(create_app(site)) as base, browser.chromium_context() as context:
                for t in threads:
                    r = bench.run_page(context, base, sampler, PAGE_JS, [f"{base}/model/a/", t, PROMPT_TEXT, LOG_EVERY], 900)
                    print(json.dumps({"threads": t, "peak_pss_mib": r["memory_peak"]["page_pss"] >> 20,
                                      "load_average": r["load_before"],
                                      "page_log [ms, stage, JS heap MiB]": r["log"],
                                      "pss_timeline [s, MiB or mark]": sampler.samples}))
        finally:
            sampler.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "1,2").split(",")])
