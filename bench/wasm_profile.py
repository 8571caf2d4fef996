"""Per-function time of the wasm kernels for one prefill and a few decode steps of an artifact.

    python bench/wasm_profile.py ARTIFACT [--prompt 32] [--steps 16] [--threads N] [--build simd|threads|scalar]

Prints milliseconds by function, slowest first: per decode step, then for the prefill."""

from __future__ import annotations

from pathlib import Path

import click

from webrt.bench.profile import profile_wasm


@click.command()
@click.argument("artifact", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--prompt", default=32)
@click.option("--steps", default=16)
@click.option("--threads", default=1)
@click.option("--build", default=None, help="force a wasm build (default: chosen by threads)")
def main(artifact: Path, prompt: int, steps: int, threads: int, build: str | None) -> None:
    r = profile_wasm(artifact, prompt, steps, threads, build)
    print(f"prefill {prompt} tokens: {r['prefillMs']:.0f} ms; decode {steps} steps: "
          f"{r['decodeMs'] / steps:.1f} ms/step ({1000 * steps / r['decodeMs']:.2f} tok/s), threads {r['threads']}")
    # prefill and decode call different functions (a symbolic against a one-token sequence)
    print(f"{'decode function':60s} {'ms/step':>10s}")
    for name in sorted(r["decode"], key=lambda n: -r["decode"][n])[:25]:
        print(f"{name:60s} {r['decode'][name] / steps:10.2f}")
    print(f"{'prefill function':60s} {'ms':>10s}")
    for name in sorted(r["prefill"], key=lambda n: -r["prefill"][n])[:25]:
        print(f"{name:60s} {r['prefill'][name]:10.1f}")


if __name__ == "__main__":
    main()
