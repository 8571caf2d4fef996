// Times the GEMVs of bench/relaxed_dot_gemv.c (built by bench/relaxed_dot_gemv.py) in Node, from
// memory: weight copies 4x the last-level cache, cycled, as a decode step streams every layer once.
// Interleaved rounds; the median round's time per call. Each kernel's max abs error is against the f32 result of its own
// layout's dequantized weights.
//   node --experimental-wasm-relaxed-simd bench/relaxed_dot_gemv.mjs FILE N K ROUNDS CACHE_MB NAME...
import { readFileSync } from "node:fs";

const [file, N, K, rounds, cacheMb, ...names] = process.argv.slice(2);
const [n, k] = [Number(N), Number(K)];
const groups = k / 32;
const { instance } = await WebAssembly.instantiate(readFileSync(file), {});
const x = instance.exports;
let top = x.__heap_base.value;
const alloc = (bytes) => {
  const at = (top + 63) & ~63;
  top = at + bytes;
  const need = Math.ceil(top / 65536) - x.memory.buffer.byteLength / 65536;
  if (need > 0) x.memory.grow(need);
  return at;
};
const qBytes = n * groups * 16;
const copies = Math.max(2, Math.ceil((4 * Number(cacheMb) * 2 ** 20) / (qBytes + n * groups * 8)));
const random = (() => { let a = 12345; return () => ((a = (a * 1103515245 + 12345) >>> 0) / 2 ** 32); })();
const xs = Float32Array.from({ length: k }, () => random() - 0.5);
const q = Uint8Array.from({ length: qBytes }, () => Math.floor(random() * 256));
const sc = Float32Array.from({ length: n * groups }, () => 0.01 + 0.02 * random());
const mn = Float32Array.from({ length: n * groups }, () => -0.1 * random());
const xPtr = alloc(k * 4), yPtr = alloc(n * 4);
new Float32Array(x.memory.buffer, xPtr, k).set(xs);
const mats = Array.from({ length: copies }, () => {
  const m = { q: alloc(qBytes), s: alloc(n * groups * 4), m: alloc(n * groups * 4) };
  new Uint8Array(x.memory.buffer, m.q, qBytes).set(q);
  new Float32Array(x.memory.buffer, m.s, n * groups).set(sc);
  new Float32Array(x.memory.buffer, m.m, n * groups).set(mn);
  return m;
});
// column of byte b's low (hi = 0) or high nibble within its group
const layouts = {
  candidate: (b, hi) => b + 16 * hi,
  shipped: (b, hi) => 8 * (b & 3) + 4 * hi + (b >> 2), // int_dot.c: nibble j of word l is column 4 j + l
};
const expected = (layout) => Float64Array.from({ length: n }, (_, row) => {
  let total = 0;
  for (let g = 0; g < groups; g++) {
    const s = sc[row * groups + g], m = mn[row * groups + g];
    for (let b = 0; b < 16; b++) {
      const byte = q[(row * groups + g) * 16 + b];
      total += xs[g * 32 + layout(b, 0)] * (s * (byte & 15) + m) + xs[g * 32 + layout(b, 1)] * (s * (byte >> 4) + m);
    }
  }
  return total;
});
const reference = Object.fromEntries(Object.entries(layouts).map(([name, l]) => [name, expected(l)]));
const median = (a) => a.sort((p, r) => p - r)[a.length >> 1];
const times = Object.fromEntries(names.map((name) => [name, []]));
for (let round = 0; round < Number(rounds); round++) {
  for (const name of names) {
    // the whole cycle timed at once: a browser's clock may be as coarse as 0.1 ms
    const t0 = performance.now();
    for (const m of mats) x[name](xPtr, m.q, m.s, m.m, yPtr, n, k);
    times[name].push((performance.now() - t0) / copies);
  }
}
const result = {};
for (const name of names) {
  x[name](xPtr, mats[0].q, mats[0].s, mats[0].m, yPtr, n, k);
  const got = new Float32Array(x.memory.buffer, yPtr, n);
  const ref = reference[name === "shipped" ? "shipped" : "candidate"];
  const scale = Math.max(...ref.map(Math.abs));
  const ms = median(times[name]);
  result[name] = { ms, weight_gb_per_s: (qBytes + n * groups * 8) / ms / 1e6,
                   max_abs_error: Math.max(...ref.map((e, j) => Math.abs(got[j] - e))), output_scale: scale };
}
console.log(JSON.stringify({ copies, result }));
