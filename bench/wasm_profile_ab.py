"""Decode profile of two artifacts on wasm, interleaved, at 1 and 2 threads (best of 2 rounds):
per function, ms a step for A and B, A/B, and each one's 1 -> 2 thread scaling.

    python bench/wasm_profile_ab.py A_DIR B_DIR OUT.json [STEPS]

Used for bench/native.md (2-thread scaling of the default model) and the 2-row GEMV change
(bench/gemma3_wllama.md). Not a timed test: ratios within one run only.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrt.bench.profile import profile_wasm  # noqa: E402

arts = {"A": Path(sys.argv[1]), "B": Path(sys.argv[2])}
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 24
best = {}
for _ in range(2):
    for t in (1, 2):
        for k, a in arts.items():
            p = profile_wasm(a, prompt=8, steps=steps, threads=t)
            if (k, t) not in best or p["decodeMs"] < best[(k, t)]["decodeMs"]:
                best[(k, t)] = p
for t in (1, 2):
    A, B = best[("A", t)], best[("B", t)]
    print(f"threads {t}: decode ms/step A {A['decodeMs'] / steps:.2f} B {B['decodeMs'] / steps:.2f}")
    print(f"  {'function':36s} {'A':>7s} {'B':>7s}   A/B  A 1->2t  B 1->2t")
    for name in sorted(A["decode"], key=lambda n: -A["decode"][n])[:10]:
        a, b = A["decode"][name] / steps, B["decode"].get(name, 0) / steps
        scale = [best[(k, 1)]["decode"].get(name, 0) / max(best[(k, 2)]["decode"].get(name, 1e-9), 1e-9) for k in "AB"]
        print(f"  {name:36s} {a:7.3f} {b:7.3f} {a / b if b else 0:5.2f}x {scale[0]:6.2f}x {scale[1]:6.2f}x")
json.dump({f"{k}{t}": v for (k, t), v in best.items()}, open(sys.argv[3], "w"))
