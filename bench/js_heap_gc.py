"""The page's JS heap after an engine generates 32 tokens on wasm: as performance.memory reads it,
and after a forced GC (CDP HeapProfiler.collectGarbage), to tell garbage from what is retained.

    python bench/js_heap_gc.py ARTIFACT_DIR

Used for bench/gemma3_wllama.md's memory notes.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.browser import shell_page  # noqa: E402

JS = """
async ([url]) => {
  const engine = await window.webrt.createEngine(url, { device: "wasm", threads: 1 });
  window.keep = engine;  // the engine stays alive: only garbage can go
  const r = await engine.completions.create({ prompt: "I want to visit Italy.", max_tokens: 32, temperature: 0 });
  return { heap: performance.memory.usedJSHeapSize, text: r.choices[0].text };
}
"""

with shell_page(Path(sys.argv[1])) as (page, url):
    r = page.evaluate(JS, [url])
    print("after generating, as read:", round(r["heap"] / 2**20, 1), "MiB")
    page.context.new_cdp_session(page).send("HeapProfiler.collectGarbage")
    print("after a forced GC:", round(page.evaluate("performance.memory.usedJSHeapSize") / 2**20, 1), "MiB")
