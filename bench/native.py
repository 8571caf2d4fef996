"""webrt's wasm backend against native llama.cpp and wllama on the default model's GGUF, in one run:
the same 213-token chat prompt, greedy decoding, 1 and 2 threads (webrt/bench/native.py; the same
as `webrt bench bench/native --native`). webrt runs twice: with its default kernels (integer dot
products in the decode step's 4-bit and Q8_0 GEMVs, --int-dot decode) and with the exact f32 kernels (--int-dot none).

    python bench/native.py [--default DIR --exact DIR]   # writes bench/native.json and native.md

Without artifact folders both are compiled here (--no-tuning-candidates). Not a timed test: the
load average is recorded with the numbers; compare ratios within one run.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.bench.native import compare, write_native_report  # noqa: E402


@click.command()
@click.option("--exact", type=click.Path(path_type=Path), default=None, help="artifact with the exact f32 kernels (--int-dot none)")
@click.option("--default", "default", type=click.Path(path_type=Path), default=None,
              help="artifact compiled with the default kernels (--int-dot decode)")
@click.option("--threads", default="1,2", show_default=True)
@click.option("--decode-tokens", default=64, show_default=True)
@click.option("--rounds", default=2, show_default=True, help="every engine runs once per round; the best round counts")
@click.option("--out", type=click.Path(path_type=Path), default=ROOT / "bench" / "native")
def main(exact: Path | None, default: Path | None, threads: str, decode_tokens: int, rounds: int, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="webrt-native-") as tmp:
        result = compare([int(t) for t in threads.split(",")], decode_tokens, {"default": default, "exact": exact},
                         Path(tmp), stage=lambda s: print(s, flush=True), rounds=rounds)
    result = {"command": "python bench/native.py " + " ".join(sys.argv[1:]), **result}
    print(write_native_report(result, out).read_text())


if __name__ == "__main__":
    main()
