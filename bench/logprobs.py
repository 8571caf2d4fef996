"""Decode speed with and without logprobs (top 20 on the device), rounds interleaved in one page.

    python bench/logprobs.py ARTIFACT [--device wasm|webgpu] [--rounds 4] [--tokens 48]

Prints each run and the medians; see bench/logprobs.md."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import click

from webrt.browser import shell_page

_JS = """
async ([url, device, rounds, tokens]) => {
  const engine = await window.webrt.createEngine(url, { device });
  const request = { prompt: "a b c d", max_tokens: tokens, temperature: 0 };
  const rows = [];
  for (let round = 0; round < rounds; round++) {
    for (const logprobs of [false, true]) {
      engine.resetChat();
      const r = await engine.completions.create({ ...request, ...(logprobs ? { logprobs: 20 } : {}) });
      rows.push({ logprobs, decode_tokens_per_s: r.usage.extra.decode_tokens_per_s, tokens: r.usage.completion_tokens });
    }
  }
  const info = engine.info;
  engine.unload();
  return { rows, device: info.device, threads: info.threads };
}
"""


@click.command()
@click.argument("artifact", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--device", type=click.Choice(["wasm", "webgpu"]), default="wasm")
@click.option("--rounds", type=int, default=4)
@click.option("--tokens", type=int, default=48)
def main(artifact: Path, device: str, rounds: int, tokens: int) -> None:
    load = os.getloadavg()[0]
    with shell_page(artifact) as (page, url):
        out = page.evaluate(_JS, [url, device, rounds, tokens])
    off = statistics.median(r["decode_tokens_per_s"] for r in out["rows"] if not r["logprobs"])
    on = statistics.median(r["decode_tokens_per_s"] for r in out["rows"] if r["logprobs"])
    print(json.dumps(out["rows"]))
    print(f"{out['device']} ({out['threads']} threads), load {load:.1f}: decode {off:.1f} tok/s without logprobs, "
          f"{on:.1f} with (ratio {on / off:.3f}; {1000 / on - 1000 / off:.2f} ms more per token)")


if __name__ == "__main__":
    main()
