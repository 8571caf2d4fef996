"""`webrt bench`: the whole pipeline on a tiny random LLaMA (ONNX export, webrt and both peers on
both backends in one browser, report and plots), checked against transformers' own greedy tokens;
and the report's arithmetic and flags on hand-made results."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from webrt.bench.models import TINY, build_hf_model
from webrt.bench.report import analyse, check_agreement, markdown, ratio

PROMPT_LENS = [8, 24]
DECODE_TOKENS = 6


def webrt_cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "webrt.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    work = out / "work"
    result = webrt_cli("bench", out / "report", "--models", TINY.name, "--peers", "--device", "wasm,webgpu",
                       "--prompt-lens", ",".join(map(str, PROMPT_LENS)), "--decode-tokens", DECODE_TOKENS,
                       "--workdir", work)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, work, json.loads((out / "report.json").read_text())


def transformers_greedy(folder, prompt: list[int], n: int) -> list[int]:
    import torch
    import transformers

    model = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=n, do_sample=False)
    return out[0, len(prompt):].tolist()


def test_every_engine_decodes_transformers_greedy_tokens(bench_report):
    from webrt.bench.runner import make_prompts

    _, work, report = bench_report
    runs = report["models"][TINY.name]["runs"]
    assert {(r["engine"], r["device"]) for r in runs} == {
        (e, d) for e in ("webrt", "ort", "transformers.js") for d in ("wasm", "webgpu")}
    prompts = make_prompts(TINY.vocab, PROMPT_LENS)
    expected = {len(p): transformers_greedy(work / TINY.name / "hf", p, DECODE_TOKENS) for p in prompts}
    for run in runs:
        assert "error" not in run, run
        assert [row["prompt_tokens"] for row in run["rows"]] == PROMPT_LENS
        for row in run["rows"]:
            assert row["tokens"] == expected[row["prompt_tokens"]], (run["engine"], run["device"], row["prompt_tokens"])
    assert report["agreement"] == {"ok": True, "compared": (len(runs) - 1) * len(PROMPT_LENS), "mismatches": []}


def test_report_holds_timings_memory_ratios_and_roofs(bench_report):
    out, _, report = bench_report
    model = report["models"][TINY.name]
    weight_bytes = model["weight_bytes"]
    for run in model["runs"]:
        assert run["info"]["load"]["total_ms"] > 0
        assert len(run["loadavg_before"]) == 3 and len(run["loadavg_after"]) == 3
        for row in run["rows"]:
            assert row["ttft_ms"] > 0 and row["prefill_tokens_per_s"] > 0 and row["decode_tokens_per_s"] > 0
        memory = run["memory"]
        assert memory["js_heap_peak_bytes"] > 0
        if run["device"] == "webgpu":
            assert memory["gpu_buffer_peak_bytes"] >= weight_bytes, run["engine"]
        else:
            assert memory["wasm_memory_bytes"] >= weight_bytes, run["engine"]
    webrt_runs = [r for r in model["runs"] if r["engine"] == "webrt"]
    for run in webrt_runs:  # the per-kernel profile covers the decode entry's functions
        assert run["profile"]["decode_ms"] and all(v >= 0 for v in run["profile"]["decode_ms"].values())
    assert report["ratios_model"] == TINY.name
    for key in ("wasm_decode_vs_ort_wasm", "webgpu_decode_vs_ort_webgpu", "wasm_decode_vs_transformers_js_wasm"):
        assert math.isfinite(report["ratios"][key]) and report["ratios"][key] > 0
    for key, target in report["targets"].items():
        assert target["met"] == (target["ratio"] >= target["target"])
    for roof in report["roofs"].values():
        assert roof["gflops"] > 0 and roof["gbs"] > 0
    text = (out / "report.md").read_text()
    assert "Token agreement: OK" in text and "wasm_decode_vs_ort_wasm" in text
    for miss in report["misses"]:  # a missed target is explained, with webrt's kernels
        assert f"Where the time goes: {miss['ratio']}" in text and miss["webrt_profile"]["top"]
    for png in ("report-throughput.png", "report-roofline.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run(engine, device, rows, threads=1):
    return {"engine": engine, "device": device, "threads": threads, "rows": rows,
            "loadavg_before": [0, 0, 0], "loadavg_after": [0, 0, 0], "info": {"load": {"total_ms": 1.0}},
            "memory": {"js_heap_peak_bytes": 1, "gpu_buffer_peak_bytes": 0, "wasm_memory_bytes": 0}}


def _row(n, decode, tokens, prefill=100.0):
    return {"prompt_tokens": n, "ttft_ms": 1000 * n / prefill, "prefill_tokens_per_s": prefill,
            "decode_tokens_per_s": decode, "tokens": tokens}


def test_ratio_is_the_geometric_mean_over_shared_prompt_lengths():
    a = _run("webrt", "wasm", [_row(16, 40.0, [1]), _row(64, 10.0, [1]), _row(256, 5.0, [1])])
    b = _run("ort", "wasm", [_row(16, 10.0, [1]), _row(64, 10.0, [1]), {"prompt_tokens": 256, "skipped": "budget"}])
    r = ratio(a, b, "decode_tokens_per_s")
    assert r["prompt_tokens"] == [16, 64]
    assert r["value"] == pytest.approx(2.0)  # sqrt(4 * 1)


def test_disagreeing_tokens_flag_the_report_and_a_missed_target_is_explained():
    config = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 512}
    runs = [_run("webrt", "wasm", [_row(8, 30.0, [5, 6, 7])]), _run("ort", "wasm", [_row(8, 10.0, [5, 6, 7])]),
            _run("webrt", "webgpu", [_row(8, 3.0, [5, 6, 7])]), _run("ort", "webgpu", [_row(8, 1.0, [5, 9, 7])])]
    runs[2]["profile"] = {"decode_tokens": 2, "decode_ms": {"matmul": 300.0, "softmax": 100.0}, "decode_wall_ms": 500.0}
    results = {"command": "webrt bench x", "date": "today", "cpus": 2, "loadavg_before": [1, 1, 1],
               "loadavg_after": [1, 1, 1], "wall_s": 60, "roofs": {"wasm": {"gflops": 10, "gbs": 5, "matmul": "", "stream": ""}},
               "options": {"prompt_lens": [8], "decode_tokens": 3, "budget_s": 60},
               "models": {"m": {"description": "m", "config": config, "quantization": "f32", "runs": runs}}}
    agreement = check_agreement(results["models"])
    assert not agreement["ok"] and agreement["compared"] == 3
    assert agreement["mismatches"][0]["run"] == "ort webgpu" and agreement["mismatches"][0]["first_difference"] == 1
    analyse(results)
    assert results["ratios"]["wasm_decode_vs_ort_wasm"] == pytest.approx(3.0)
    assert results["targets"]["wasm_decode_vs_ort_wasm"]["met"]
    assert not results["targets"]["webgpu_decode_vs_ort_webgpu"]["met"]
    [miss] = results["misses"]
    assert miss["short_by"] == pytest.approx(5.0 / 3.0)
    assert miss["webrt_profile"]["top"][0] == {"function": "matmul", "ms": 150.0, "share": 0.75}
    text = markdown(results, {})
    assert "Token agreement: FLAGGED" in text and "**missed** by 1.67x" in text and "| matmul | 150.00 | 75% |" in text


@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "--device 'cuda'"),
    (["--prompt-lens", "0,16"], "--prompt-lens '0,16'"),
    (["--threads", "two"], "--threads 'two'"),
    (["--models", "gpt5"], "unknown model gpt5"),
    (["--models", "llama-h64-l2", "--prompt-lens", "200"], "context window of 128"),
    (["--models", "smollm2-q4f32", "--prompt-lens", "600"], "context window of 512"),  # compiled by the bench too
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = webrt_cli("bench", tmp_path / "r", *args, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("webrt: error: ") and message in lines[0], result.stderr
