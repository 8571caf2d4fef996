// Times the quantized decode GEMVs of a kernels.wasm written by bench/wasm_qgemv.py, in Node,
// through the JS shell's own WasmKernels: copies of each matrix's parts (2 x CACHE_MB in all) are
// cycled, as a decode step streams every layer's weights once. Rounds interleave the functions, so each sees the same background load.
//   node bench/wasm_qgemv.mjs SPEC.json   -> one JSON line {name: {ms, weight_gb_per_s, max_abs_error}}
import { readFileSync } from "node:fs";
import { WasmKernels } from "../web/wasm_backend.js";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
const kernels = await WasmKernels.create(readFileSync(spec.wasm));
const median = (a) => a.sort((p, q) => p - q)[a.length >> 1];
// a small file's Buffer is a view into Node's shared pool: copy out its own bytes
const floats = (file) => {
  const b = readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const setups = spec.functions.map((fn) => {
  const tokens = fn.tokens ?? 1;
  const x = kernels.alloc(tokens * fn.k * 4);
  const y = kernels.alloc(tokens * fn.n * 4);
  kernels.write(x, floats(fn.x));
  const bytes = fn.parts.reduce((s, p) => s + p.bytes, 0);
  const copies = Math.ceil((2 * spec.cache_mb * 2 ** 20) / bytes);
  const sets = Array.from({ length: copies }, () => fn.parts.map((p) => {
    const ptr = kernels.alloc(p.bytes);
    new Uint8Array(kernels.memory.buffer, ptr, p.bytes).set(readFileSync(p.file));
    return { ptr, shape: p.shape, dtype: p.dtype };
  }));
  const args = (set) => [{ ptr: x, shape: [1, tokens, fn.k], dtype: "float32" }, ...set,
    { ptr: y, shape: [1, tokens, fn.n], dtype: "float32" }];
  return { fn, y, tokens, bytes, sets, args, times: [] };
});
for (let round = 0; round < spec.rounds; round++) {
  for (const s of setups) {
    for (const set of s.sets) {
      const t0 = performance.now();
      kernels.call(s.fn.name, s.args(set));
      s.times.push(performance.now() - t0);
    }
  }
}
const result = {};
for (const s of setups) {
  kernels.call(s.fn.name, s.args(s.sets[0]));
  const got = new Float32Array(kernels.memory.buffer, s.y, s.tokens * s.fn.n);
  const expected = floats(s.fn.expected);
  const error = expected.reduce((worst, e, j) => Math.max(worst, Math.abs(got[j] - e)), 0);
  // the fastest call: on a loaded machine (other processes on the cores) the median measures the load
  const ms = Math.min(...s.times);
  result[s.fn.name] = { ms, median_ms: median(s.times), weight_gb_per_s: s.bytes / ms / 1e6, weight_bytes: s.bytes,
    max_abs_error: error };
}
console.log(JSON.stringify(result));
