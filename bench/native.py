"""webrt's wasm backend against native llama.cpp and wllama on the default model's GGUF, in one run:
the same 213-token chat prompt, greedy decoding, 1 and 2 threads (webrt/bench/native.py runs the
engines). webrt runs twice: with the exact f32 kernels and with the int-dot kernels (--int-dot).

    python bench/native.py [--exact DIR --int-dot DIR]   # writes bench/native.json and native.md

Without artifact folders both are compiled here (--no-tuning-candidates). Not a timed test: the
load average is recorded with the numbers; compare ratios within one run.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.bench.native import chat_prompt, load_average, run_browser, run_native  # noqa: E402
from webrt.default_model import default_model_path  # noqa: E402

TARGETS = {"decode": 0.6, "prefill": 0.5}  # webrt / native (issue 20)


def _common_prefix(a: list, b: list) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _compile(out: Path, int_dot: bool) -> Path:
    from webrt.build_artifact import compile_model

    if not (out / "manifest.json").is_file():
        compile_model(None, out, "q4f32", tuning_candidates=False, int_dot=int_dot)
    return out


@click.command()
@click.option("--exact", type=click.Path(path_type=Path), default=None, help="artifact with the exact f32 kernels")
@click.option("--int-dot", "int_dot", type=click.Path(path_type=Path), default=None,
              help="artifact compiled with --int-dot")
@click.option("--threads", default="1,2", show_default=True)
@click.option("--decode-tokens", default=64, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=ROOT / "bench" / "native")
def main(exact: Path | None, int_dot: Path | None, threads: str, decode_tokens: int, out: Path) -> None:
    threads_list = [int(t) for t in threads.split(",")]
    gguf = default_model_path()
    prompt = chat_prompt()
    load_before = load_average()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="webrt-native-") as tmp:
        artifacts = {"exact": exact or _compile(Path(tmp) / "exact", False),
                     "int-dot": int_dot or _compile(Path(tmp) / "int-dot", True)}
        native = {t: run_native(gguf, prompt, t, decode_tokens) for t in threads_list}
        prompt_ids = native[threads_list[0]]["prompt_ids"]
        browser = run_browser(artifacts, gguf, prompt, prompt_ids, threads_list, decode_tokens, wllama=True,
                              stage=lambda s: print(s, flush=True))
        # native again after the browser runs: the machine's load moves during a run
        native_after = {t: run_native(gguf, prompt, t, decode_tokens) for t in threads_list}
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(artifacts["exact"] / "tokenizer.json"))
    rows = []
    for t in threads_list:
        nat = {k: max(native[t][k], native_after[t][k]) for k in ("prefill_tokens_per_s", "decode_tokens_per_s")}
        wl = browser[("wllama", t)]
        for label in artifacts:
            r = browser[(f"webrt-{label}", t)]
            rows.append({
                "engine": f"webrt {label}", "threads": t,
                "prefill_tokens_per_s": r["prefill_tokens_per_s"], "decode_tokens_per_s": r["decode_tokens_per_s"],
                "prefill_vs_native": r["prefill_tokens_per_s"] / nat["prefill_tokens_per_s"],
                "decode_vs_native": r["decode_tokens_per_s"] / nat["decode_tokens_per_s"],
                "prefill_vs_wllama": r["prefill_tokens_per_s"] / wl["prefill_tokens_per_s"],
                "decode_vs_wllama": r["decode_tokens_per_s"] / wl["decode_tokens_per_s"],
                "tokens_agreeing_with_native": _common_prefix(r["tokens"], native[t]["tokens"]),
                "text": tokenizer.decode(r["tokens"]),
            })
        rows.append({"engine": "native llama.cpp", "threads": t, **nat,
                     "runs": [native[t], native_after[t]]})
        rows.append({"engine": "wllama", "threads": t, **{k: wl[k] for k in ("prefill_tokens_per_s", "decode_tokens_per_s")},
                     "prompt_tokens": wl["prompt_tokens"], "text": wl["text"]})
    result = {"command": "python bench/native.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d %H:%M"),
              "load_average_before": load_before, "load_average_after": load_average(),
              "wall_s": round(time.time() - started), "gguf": gguf.name, "prompt_tokens": len(prompt_ids),
              "decode_tokens": decode_tokens, "native_tokens": {t: native[t]["tokens"] for t in threads_list},
              "rows": [{k: v for k, v in r.items() if k != "runs"} | ({"runs": [{k: v for k, v in x.items()
                        if k.endswith("_per_s")} for x in r["runs"]]} if "runs" in r else {}) for r in rows]}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(_markdown(result))
    print(out.with_suffix(".md").read_text())


def _markdown(r: dict) -> str:
    lines = [f"# webrt wasm against native llama.cpp and wllama ({r['date']})", "",
             f"Command: `{r['command']}`. Model: {r['gguf']} (webrt: q4f32, the GGUF's Q4_1 blocks in the group "
             f"layout). One {r['prompt_tokens']}-token ChatML prompt, greedy, {r['decode_tokens']} tokens. "
             f"Load average before {r['load_average_before']}, after {r['load_average_after']}; {r['wall_s']} s.",
             "Native is llama-cpp-python 0.3.36 built with -DGGML_NATIVE=ON (AVX2), measured before and after the "
             "browser runs (the faster of the two is used). wllama 3.8.1 in the same Chromium as webrt.", "",
             "| engine | threads | prefill tok/s | decode tok/s | prefill / native | decode / native | "
             "prefill / wllama | decode / wllama | tokens = native |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        def f(key, fmt="{:.2f}"):
            return fmt.format(row[key]) if row.get(key) is not None else ""
        lines.append(f"| {row['engine']} | {row['threads']} | {f('prefill_tokens_per_s', '{:.1f}')} | "
                     f"{f('decode_tokens_per_s', '{:.1f}')} | {f('prefill_vs_native')} | {f('decode_vs_native')} | "
                     f"{f('prefill_vs_wllama')} | {f('decode_vs_wllama')} | {row.get('tokens_agreeing_with_native', '')} |")
    lines += ["", f"Targets (issue 20): decode >= {TARGETS['decode']:.0%} of native, prefill >= {TARGETS['prefill']:.0%}, "
              "decode and prefill >= 2x wllama.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
