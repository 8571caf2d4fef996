"""The benchmark's report: token agreement, ratios against the peers and their targets, the
JSON and markdown files, and the plots (matplotlib): tokens/s per engine and a roofline."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .roofline import achieved, token_costs

# webrt decode tok/s over onnxruntime-web's, on the hidden-768 model (issue 7's targets)
TARGETS = {"wasm_decode_vs_ort_wasm": 1.5, "webgpu_decode_vs_ort_webgpu": 5.0}
HEADLINE_MODEL = "llama-h768-l12"
PEER_KEYS = {"ort": "ort", "transformers.js": "transformers_js"}
MB = 1 << 20


def run_label(run: dict) -> str:
    threads = f" {run['threads']}t" if run["device"] == "wasm" and run.get("threads", 1) != 1 else ""
    return f"{run['engine']} {run['device']}{threads}"


def measured(run: dict) -> list[dict]:
    return [r for r in run.get("rows", []) if "skipped" not in r]


def check_agreement(models: dict) -> dict:
    """Greedy tokens of every run against webrt's first run of the model, prompt by prompt."""
    mismatches = []
    compared = 0
    for name, model in models.items():
        runs = [r for r in model["runs"] if r.get("rows")]
        reference = next((r for r in runs if r["engine"] == "webrt"), runs[0] if runs else None)
        if reference is None:
            continue
        expected = {row["prompt_tokens"]: row["tokens"] for row in measured(reference)}
        for run in runs:
            for row in measured(run):
                want = expected.get(row["prompt_tokens"])
                if want is None or run is reference:
                    continue
                compared += 1
                # a run out of time decodes fewer tokens: the shorter sequence must be a prefix
                n = min(len(want), len(row["tokens"]))
                if row["tokens"][:n] != want[:n] or n == 0:
                    at = next((i for i, (a, b) in enumerate(zip(want, row["tokens"])) if a != b), n)
                    mismatches.append({"model": name, "prompt_tokens": row["prompt_tokens"], "run": run_label(run),
                                       "reference": run_label(reference), "first_difference": at,
                                       "expected": want, "got": row["tokens"]})
    return {"ok": not mismatches, "compared": compared, "mismatches": mismatches}


def geomean(values: list[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def ratio(a: dict, b: dict, metric: str) -> dict | None:
    """a over b on `metric`, the geometric mean over the prompt lengths both measured."""
    rows_b = {r["prompt_tokens"]: r for r in measured(b)}
    pairs = [(r[metric], rows_b[r["prompt_tokens"]][metric]) for r in measured(a)
             if r["prompt_tokens"] in rows_b and r.get(metric) and rows_b[r["prompt_tokens"]].get(metric)]
    if not pairs:
        return None
    return {"value": geomean([x / y for x, y in pairs]), "webrt": geomean([x for x, _ in pairs]),
            "peer": geomean([y for _, y in pairs]), "prompt_tokens": [r["prompt_tokens"] for r in measured(a)
                                                                     if r["prompt_tokens"] in rows_b]}


def model_ratios(model: dict) -> dict:
    """webrt over each peer, per device and thread count: decode and prefill tok/s."""
    out = {}
    runs = [r for r in model["runs"] if r.get("rows")]
    for run in runs:
        if run["engine"] != "webrt":
            continue
        for peer in runs:
            if peer["engine"] == "webrt" or peer["device"] != run["device"] or peer["threads"] != run["threads"]:
                continue
            suffix = f"_{run['threads']}t" if run["device"] == "wasm" and run["threads"] != 1 else ""
            device = f"{run['device']}{suffix}"
            for metric, key in (("decode_tokens_per_s", "decode"), ("prefill_tokens_per_s", "prefill")):
                r = ratio(run, peer, metric)
                if r:
                    out[f"{device}_{key}_vs_{PEER_KEYS[peer['engine']]}_{device}"] = r
    return out


def decode_profile(run: dict, top: int = 8) -> dict | None:
    """webrt's decode profile as ms per token per kernel function, largest first."""
    profile = run.get("profile")
    if not profile or not profile.get("decode_ms"):
        return None
    n = profile["decode_tokens"]
    per_token = {k: v / n for k, v in profile["decode_ms"].items()}
    total = sum(per_token.values())
    ranked = sorted(per_token.items(), key=lambda kv: -kv[1])
    return {"ms_per_token": total, "wall_ms_per_token": profile["decode_wall_ms"] / n, "functions": len(per_token),
            "top": [{"function": k, "ms": v, "share": v / total if total else 0} for k, v in ranked[:top]]}


def analyse(results: dict) -> dict:
    """Adds agreement, ratios (per model, and the headline model's at the top), targets and misses."""
    models = results["models"]
    results["agreement"] = check_agreement(models)
    roofs = results.get("roofs") or {}
    for model in models.values():
        model["ratios"] = model_ratios(model)
        costs = token_costs(model["config"], model["quantization"])
        model["weight_bytes"] = costs["weight_bytes"]
        for run in model["runs"]:
            run["achieved"] = [achieved(costs, row, len(row["tokens"])) for row in measured(run)]
    headline = HEADLINE_MODEL if HEADLINE_MODEL in models else next(
        (n for n in reversed(list(models)) if models[n]["ratios"]), None)
    results["ratios_model"] = headline
    head = models[headline]["ratios"] if headline else {}
    results["ratios"] = {k: v["value"] for k, v in head.items()}
    results["ratio_details"] = head
    targets, misses = {}, []
    for key, target in TARGETS.items():
        value = results["ratios"].get(key)
        targets[key] = {"target": target, "ratio": value, "met": value is not None and value >= target}
        if value is None or value >= target:
            continue
        device = key.split("_")[0]
        webrt_run = next(r for r in models[headline]["runs"] if r["engine"] == "webrt" and r["device"] == device
                         and r["threads"] == 1)
        peer_run = next(r for r in models[headline]["runs"] if r["engine"] == "ort" and r["device"] == device
                        and r["threads"] == 1)
        detail = head[key]
        miss = {"ratio": key, "value": value, "target": target, "short_by": target / value,
                "webrt_ms_per_token": 1000 / detail["webrt"], "peer_ms_per_token": 1000 / detail["peer"],
                "webrt_profile": decode_profile(webrt_run)}
        roof = roofs.get(device, {})
        for who, run in (("webrt", webrt_run), ("peer", peer_run)):
            rates = [a["decode"]["gbs"] for a in run["achieved"] if "decode" in a]
            if rates and roof.get("gbs"):
                miss[f"{who}_decode_gbs"] = geomean(rates)
                miss[f"{who}_share_of_memory_roof"] = geomean(rates) / roof["gbs"]
        misses.append(miss)
    results["targets"] = targets
    results["misses"] = misses
    return results


# ----------------------------------------------------------------------------------------------
# files


def _fmt(x, digits=2):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def markdown(results: dict, plots: dict[str, str]) -> str:
    opts = results["options"]
    roofs = results.get("roofs") or {}
    webgpu_adapter = (roofs.get("webgpu") or {}).get("adapter") or {}
    lb, la = results["loadavg_before"], results["loadavg_after"]
    lines = [f"# webrt bench ({results['date']})", "",
             f"Command: `{results['command']}`", "",
             f"Headless Chromium {results.get('browser_version', '')}, {results['cpus']} CPU cores; WebGPU adapter: "
             f"{webgpu_adapter.get('vendor', '?')} {webgpu_adapter.get('architecture', '?')}. "
             f"Load average (1/5/15 min) before {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f}, after "
             f"{la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f}. Wall time {results['wall_s'] / 60:.1f} min. "
             f"Prompts of {', '.join(map(str, opts['prompt_lens']))} random token ids, then greedy decoding of "
             f"{opts['decode_tokens']} tokens (the first from the prefill). Each engine run has a "
             f"{opts['budget_s']:.0f} s budget for a warm-up generation and its prompts: a prompt predicted to "
             "overrun it is skipped (the shortest always runs), and past it decoding stops after 5 tokens. "
             f"Before each engine run the bench waits for the CPUs to go idle (longest wait "
             f"{max((r.get('settle_s', 0) for m in results['models'].values() for r in m['runs']), default=0):.1f} s). "
             "Ratios are geometric means over the prompt lengths both engines measured. onnxruntime-web's WebGPU EP "
             "compiles shaders per input shape, so its time to first token for a prompt length it has not seen "
             "includes that compilation, as in a chat.", ""]
    for title, path in plots.items():
        lines.append(f"![{title}]({path})")
    lines.append("")
    agreement = results["agreement"]
    if agreement["ok"]:
        lines += [f"**Token agreement: OK** — {agreement['compared']} greedy token sequences of the other runs match "
                  "webrt's (a sequence cut short by the budget must be a prefix).", ""]
    else:
        lines += [f"**Token agreement: FLAGGED** — {len(agreement['mismatches'])} of {agreement['compared']} sequences differ:", ""]
        for m in agreement["mismatches"]:
            lines.append(f"- {m['model']}, {m['prompt_tokens']}-token prompt: {m['run']} differs from {m['reference']} "
                         f"at token {m['first_difference']} (expected {m['expected']}, got {m['got']})")
        lines.append("")
    if results.get("ratios_model"):
        lines += [f"## Targets ({results['ratios_model']})", "",
                  "| ratio | webrt tok/s | peer tok/s | webrt / peer | target | |", "|---|---|---|---|---|---|"]
        details = results["ratio_details"]
        for key, t in results["targets"].items():
            d = details.get(key)
            status = "not measured" if t["ratio"] is None else ("met" if t["met"] else
                                                                 f"**missed** by {t['target'] / t['ratio']:.2f}x")
            lines.append(f"| {key} | {_fmt(d and d['webrt'])} | {_fmt(d and d['peer'])} | {_fmt(t['ratio'])} | "
                         f"{t['target']} | {status} |")
        lines.append("")
        others = [k for k in details if k not in results["targets"]]
        if others:
            lines += ["| other ratios | webrt | peer | webrt / peer |", "|---|---|---|---|"]
            lines += [f"| {k} | {_fmt(details[k]['webrt'])} | {_fmt(details[k]['peer'])} | {_fmt(details[k]['value'])} |"
                      for k in others]
            lines.append("")
    for miss in results["misses"]:
        lines += [f"### Where the time goes: {miss['ratio']} = {miss['value']:.2f} (target {miss['target']}, "
                  f"short by {miss['short_by']:.2f}x)", "",
                  f"webrt decodes a token in {miss['webrt_ms_per_token']:.1f} ms, onnxruntime-web in "
                  f"{miss['peer_ms_per_token']:.1f} ms."]
        if "webrt_decode_gbs" in miss:
            lines.append(f"Weights and KV cache stream at {miss['webrt_decode_gbs']:.2f} GB/s for webrt "
                         f"({miss['webrt_share_of_memory_roof'] * 100:.0f}% of the measured memory roof) and "
                         f"{miss.get('peer_decode_gbs', 0):.2f} GB/s for onnxruntime-web "
                         f"({miss.get('peer_share_of_memory_roof', 0) * 100:.0f}%).")
        prof = miss["webrt_profile"]
        if prof:
            lines += [f"webrt's decode profile (each kernel timed alone, {prof['functions']} functions, "
                      f"{prof['ms_per_token']:.1f} ms per token in kernels of {prof['wall_ms_per_token']:.1f} ms per "
                      "profiled token):", "", "| function | ms per token | share |", "|---|---|---|"]
            lines += [f"| {t['function']} | {t['ms']:.2f} | {t['share'] * 100:.0f}% |" for t in prof["top"]]
        lines.append("")
    lines += ["## Results", "",
              "| model | engine | threads | load ms (download / init) | prompt | TTFT ms | prefill tok/s | "
              "decode tok/s | JS heap MB | GPU MB | wasm MB | loadavg |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, model in results["models"].items():
        for run in model["runs"]:
            label = f"{run['engine']} {run['device']}"
            threads = run["threads"] if run["device"] == "wasm" else "–"
            if "error" in run or "unsupported" in run:
                lines.append(f"| {name} | {label} | {threads} | {run.get('error') or run.get('unsupported')} "
                             "| | | | | | | | |")
                continue
            load = run["info"]["load"]
            load_text = f"{_fmt(load['total_ms'], 0)} ({_fmt(load.get('download_ms'), 0)} / {_fmt(load.get('init_ms'), 0)})"
            mem = run["memory"]
            for i, row in enumerate(run["rows"]):
                head = (f"| {name} | {label} | {threads} | {load_text} |" if i == 0 else "| | | | |")
                if "skipped" in row:
                    lines.append(f"{head} {row['prompt_tokens']} | skipped: {row['skipped']} | | | | | | |")
                    continue
                memory = (f"{mem['js_heap_peak_bytes'] / MB:.0f} | {mem['gpu_buffer_peak_bytes'] / MB:.0f} | "
                          f"{mem['wasm_memory_bytes'] / MB:.0f}" if i == 0 else " | | ")
                loadavg = f"{run['loadavg_before'][0]:.2f} → {run['loadavg_after'][0]:.2f}" if i == 0 else ""
                lines.append(f"{head} {row['prompt_tokens']} | {_fmt(row['ttft_ms'], 0)} | "
                             f"{_fmt(row['prefill_tokens_per_s'])} | {_fmt(row['decode_tokens_per_s'])} | {memory} | {loadavg} |")
    lines += ["", "Models: " + "; ".join(f"{n}: {m['description']}" for n, m in results["models"].items()) + ".",
              "Load: webrt's download includes the upload into GPU buffers or wasm memory and its init is pipeline "
              "creation (WebGPU) or instantiation; onnxruntime-web's init is session creation; transformers.js "
              "reports its total only. No engine tunes kernels at load time. GPU MB and wasm MB are peaks over all "
              "buffers and memories the page created; JS heap is the sampled peak of performance.memory.", ""]
    if roofs:
        lines += ["## Roofs of this browser", "", "| backend | GFLOP/s | GB/s | matmul kernel | stream kernel |",
                  "|---|---|---|---|---|"]
        for backend, r in roofs.items():
            if "error" in r:
                lines.append(f"| {backend} | {r['error']} | | | |")
            else:
                lines.append(f"| {backend} | {r['gflops']:.2f} | {r['gbs']:.2f} | {r['matmul']} | {r['stream']} |")
        lines.append("")
    return "\n".join(lines)


ENGINE_COLORS = {"webrt": "#1f77b4", "ort": "#ff7f0e", "transformers.js": "#2ca02c"}


def plot_throughput(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    fig, axes = plt.subplots(2, len(models), figsize=(max(5, 4.2 * len(models)), 7.5), squeeze=False)
    for col, (name, model) in enumerate(models.items()):
        runs = [r for r in model["runs"] if measured(r)]
        for row, (metric, title) in enumerate((("decode_tokens_per_s", "decode"), ("prefill_tokens_per_s", "prefill"))):
            ax = axes[row][col]
            labels, values, colors, hatches = [], [], [], []
            for run in runs:
                v = geomean([r[metric] for r in measured(run) if r.get(metric)])
                if v:
                    labels.append(run_label(run))
                    values.append(v)
                    colors.append(ENGINE_COLORS.get(run["engine"], "gray"))
                    hatches.append("//" if run["device"] == "webgpu" else "")
            bars = ax.bar(range(len(values)), values, color=colors, hatch=hatches, edgecolor="black", linewidth=0.5)
            for bar, v in zip(bars, values):
                ax.annotate(f"{v:.3g}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
            ax.set_yscale("log")
            ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=7)
            ax.set_title(f"{name}: {title} tok/s", fontsize=9)
            ax.grid(axis="y", which="both", alpha=0.3)
    fig.suptitle(f"webrt, onnxruntime-web and transformers.js in one browser run ({results['date']})\n"
                 "plain bars: wasm, hatched: WebGPU; log scale", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roofline(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D

    roofs = {k: v for k, v in (results.get("roofs") or {}).items() if "gflops" in v}
    models = results["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(max(7.5, 4.6 * len(models)), 5.6), squeeze=False)
    intensity = np.logspace(-2, 3, 200)
    for ax, (name, model) in zip(axes[0], models.items()):
        for backend, roof in roofs.items():
            ax.plot(intensity, np.minimum(roof["gflops"], intensity * roof["gbs"]), "--" if backend == "webgpu" else "-",
                    color="black", linewidth=1)
        for run in model["runs"]:
            if run["threads"] != 1:
                continue
            for phase, marker in (("decode", "o"), ("prefill", "^")):
                points = [a[phase] for a in run.get("achieved", []) if phase in a]
                color = ENGINE_COLORS.get(run["engine"], "gray")
                ax.scatter([p["intensity"] for p in points], [p["gflops"] for p in points], marker=marker, s=30,
                           edgecolors=color, facecolors="none" if run["device"] == "webgpu" else color)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("FLOPs per byte of weights + KV cache", fontsize=8)
        ax.set_ylabel("achieved GFLOP/s (model FLOPs)", fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.grid(which="both", alpha=0.3)
    handles = [Line2D([], [], color="black", linestyle="-" if b == "wasm" else "--",
                      label=f"{b} roof: {r['gflops']:.3g} GFLOP/s, {r['gbs']:.3g} GB/s") for b, r in roofs.items()]
    handles += [Line2D([], [], marker="o", linestyle="", color=c, label=e) for e, c in ENGINE_COLORS.items()]
    handles += [Line2D([], [], marker="o", linestyle="", color="gray", label="decode (filled: wasm)"),
                Line2D([], [], marker="^", linestyle="", color="gray", markerfacecolor="none", label="prefill (hollow: WebGPU)")]
    fig.legend(handles=handles, loc="lower center", ncol=3 if len(models) < 3 else 5, fontsize=7, frameon=False)
    fig.suptitle("Roofline against the measured limits of this browser\n(wasm SIMD128 and WGSL micro-kernels; one thread)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.16 if len(models) < 3 else 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def output_paths(out: Path) -> dict[str, Path]:
    """OUT is a path prefix (bench/latest -> bench/latest.json, .md, -throughput.png,
    -roofline.png), or a folder (OUT/bench.json, ...)."""
    prefix = out / "bench" if out.is_dir() or str(out).endswith("/") else out
    return {"json": prefix.with_name(prefix.name + ".json"), "md": prefix.with_name(prefix.name + ".md"),
            "throughput": prefix.with_name(prefix.name + "-throughput.png"),
            "roofline": prefix.with_name(prefix.name + "-roofline.png")}


def write_report(results: dict, out: Path) -> dict[str, Path]:
    paths = output_paths(out)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    plot_throughput(results, paths["throughput"])
    plot_roofline(results, paths["roofline"])
    paths["json"].write_text(json.dumps(results, indent=1, default=float) + "\n")
    plots = {"tokens/s per engine and backend": paths["throughput"].name, "roofline": paths["roofline"].name}
    paths["md"].write_text(markdown(results, plots) + "\n")
    return paths
