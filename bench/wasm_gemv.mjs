// Times the GEMV variants of a kernels.wasm written by bench/wasm_gemv.py, in Node, through the JS
// shell's own WasmKernels. Two settings: "memory" cycles through weight copies larger than the
// last-level cache (as a decode step streams every layer's weights once), "cache" repeats one copy.
//   node bench/wasm_gemv.mjs FILE N K ROUNDS CACHE_MB NAME...   -> one JSON line
import { readFileSync } from "node:fs";
import { WasmKernels } from "../web/wasm_backend.js";

const [file, N, K, rounds, cacheMb, ...names] = process.argv.slice(2);
const [n, k] = [Number(N), Number(K)];
const kernels = await WasmKernels.create(readFileSync(file));
const copies = Math.ceil((4 * Number(cacheMb) * 2 ** 20) / (n * k * 4)); // 4x the cache
const x = kernels.alloc(k * 4);
const y = kernels.alloc(n * 4);
const xs = Float32Array.from({ length: k }, () => Math.random() - 0.5);
const ws = Float32Array.from({ length: n * k }, () => Math.random() - 0.5);
kernels.write(x, xs);
const weights = Array.from({ length: copies }, () => {
  const ptr = kernels.alloc(n * k * 4);
  kernels.write(ptr, ws);
  return ptr;
});
const expected = Float64Array.from({ length: n }, (_, j) => xs.reduce((s, v, i) => s + v * ws[j * k + i], 0));
const args = (w) => [{ ptr: x, shape: [1, 1, k], dtype: "float32" }, { ptr: w, shape: [n, k], dtype: "float32" },
  { ptr: y, shape: [1, 1, n], dtype: "float32" }];
const median = (a) => a.sort((p, q) => p - q)[a.length >> 1];
const times = Object.fromEntries(names.map((name) => [name, { memory: [], cache: [] }]));
// interleaved rounds: each variant sees the same background noise
for (let round = 0; round < Number(rounds); round++) {
  for (const name of names) {
    for (const [setting, pick] of [["memory", (r) => weights[r % copies]], ["cache", () => weights[0]]]) {
      for (let r = 0; r < copies; r++) {
        const t0 = performance.now();
        kernels.call(name, args(pick(r)));
        times[name][setting].push(performance.now() - t0);
      }
    }
  }
}
const result = {};
for (const name of names) {
  kernels.call(name, args(weights[0]));
  const got = new Float32Array(kernels.memory.buffer, y, n);
  const error = Math.max(...expected.map((e, j) => Math.abs(got[j] - e)));
  const ms = { memory: median(times[name].memory), cache: median(times[name].cache) };
  result[name] = { ms, gb_per_s: { memory: (n * k * 4) / ms.memory / 1e6, cache: (n * k * 4) / ms.cache / 1e6 }, max_abs_error: error };
}
console.log(JSON.stringify(result));
