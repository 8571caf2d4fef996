// The page side of bench/int8_gemm.py (evaluated in headless Chromium on a webrt-served page): times
// bench/int8_gemm.c's GEMM kernels, activation quantizers and peak loops, interleaved over rounds, and
// checks each kernel against a float64 reference on a sample of outputs (every 13th token, every 7th
// weight row), both on the kernel's own dequantized inputs and on the f32 inputs.
async ({ wasmUrl, shapes, kernels, m, rounds, peaks, peakIters }) => {
  const { instance } = await WebAssembly.instantiate(await (await fetch(wasmUrl)).arrayBuffer(), {});
  const x = instance.exports;
  let top = x.__heap_base.value;
  const alloc = (bytes) => {
    const at = (top + 63) & ~63;
    top = at + bytes;
    const need = Math.ceil(top / 65536) - x.memory.buffer.byteLength / 65536;
    if (need > 0) x.memory.grow(need);
    return at;
  };
  const random = (() => { let a = 12345; return () => ((a = (a * 1103515245 + 12345) >>> 0) / 2 ** 32); })();
  const mp = Math.ceil(m / 12) * 12;  // rows padded for every block's tokens
  const view = (Type, ptr, count) => new Type(x.memory.buffer, ptr, count);
  const family = (name) => name.split("_")[0];
  const blockTokens = (name) => Number(/_t(\d)r/.exec(name)[1]);

  const runs = shapes.map(([n, k]) => {
    const p = {
      af: alloc(mp * k * 4), wf: alloc(n * k * 4), w8: alloc(n * k), w16: alloc(n * k * 2), sw: alloc(n * 4),
      wsum: alloc(n * 4), a16: alloc(mp * k * 2), a8: alloc(mp * k), au7: alloc(mp * k), au6: alloc(mp * k), s16: alloc(mp * 4),
      s8: alloc(mp * 4), su7: alloc(mp * 4), zu7: alloc(mp * 4), su6: alloc(mp * 4), zu6: alloc(mp * 4), c: alloc(mp * n * 4),
    };
    const af = view(Float32Array, p.af, mp * k);
    for (let i = 0; i < m * k; i++) af[i] = random() - 0.5;
    const wf = view(Float32Array, p.wf, n * k);
    for (let i = 0; i < n * k; i++) wf[i] = (random() - 0.5) * 0.1;
    x.quant_weights(p.wf, n, k, p.w8, p.w16, p.sw, p.wsum);
    const quant = {
      i16: () => x.quant_sym(p.af, mp, k, 32767, p.a16, 2, p.s16),
      i8: () => x.quant_sym(p.af, mp, k, 127, p.a8, 1, p.s8),
      u7: () => x.quant_u7(p.af, mp, k, 127, p.au7, p.su7, p.zu7),
      u6: () => x.quant_u7(p.af, mp, k, 63, p.au6, p.su6, p.zu6),
    };
    const args = {  // (A, sa, za, W, sw, wsum) per family
      f32: [p.af, 0, 0, p.wf, 0, 0], i16w16: [p.a16, p.s16, 0, p.w16, p.sw, 0], i16w8: [p.a16, p.s16, 0, p.w8, p.sw, 0],
      u7: [p.au7, p.su7, p.zu7, p.w8, p.sw, p.wsum], u7s: [p.au7, p.su7, p.zu7, p.w8, p.sw, p.wsum],
      u6p: [p.au6, p.su6, p.zu6, p.w8, p.sw, p.wsum], i8: [p.a8, p.s8, 0, p.w8, p.sw, 0],
    };
    const call = (name) => {
      const mt = blockTokens(name);
      x[name](...args[family(name)], p.c, Math.ceil(m / mt) * mt, n, k);
    };
    return { n, k, p, quant, call, times: Object.fromEntries([...kernels, ...Object.keys(quant).map((q) => `quant_${q}`)].map((nm) => [nm, []])) };
  });

  for (const run of runs) {  // tier-up, and the quantized activations the kernels read
    for (const q of Object.values(run.quant)) for (let i = 0; i < 3; i++) q();
    for (const name of kernels) for (let i = 0; i < 3; i++) run.call(name);
  }
  const peakTimes = Object.fromEntries(peaks.map((nm) => [nm, []]));
  const peakArgs = { peak_f32_madd: [1e-3, 1], peak_f32_mul_add: [0, 1e-7], peak_dot_i16: [0, 1], peak_relaxed_dot: [3, 5],
                     peak_relaxed_dot_chain: [0, 5],
                     peak_relaxed_dot_split: [0, 5], peak_relaxed_dot_pair: [3, 5] };
  // tier-up: Liftoff first, TurboFan compiled in the background after a budget; let it finish
  for (const nm of peaks) for (let i = 0; i < 3; i++) x[nm](peakIters / 20, ...peakArgs[nm]);
  await new Promise((done) => setTimeout(done, 1000));
  for (const nm of peaks) x[nm](peakIters, ...peakArgs[nm]);
  for (const run of runs) for (const name of kernels) run.call(name);

  for (let r = 0; r < rounds; r++) {
    for (const nm of peaks) {
      const t0 = performance.now();
      x[nm](peakIters, ...peakArgs[nm]);
      peakTimes[nm].push(performance.now() - t0);
    }
    for (const run of runs) {
      for (const [q, fn] of Object.entries(run.quant)) {
        const t0 = performance.now();
        fn();
        run.times[`quant_${q}`].push(performance.now() - t0);
      }
      for (const name of kernels) {
        const t0 = performance.now();
        run.call(name);
        run.times[name].push(performance.now() - t0);
      }
    }
  }

  // float64 references on a sample of outputs
  const shapesOut = runs.map(({ n, k, p, call, times }) => {
    const af = view(Float32Array, p.af, mp * k), wf = view(Float32Array, p.wf, n * k);
    const w8 = view(Int8Array, p.w8, n * k), sw = view(Float32Array, p.sw, n);
    const wq = Float64Array.from(w8, (v, i) => v * sw[Math.floor(i / k)]);
    const [a16, s16] = [view(Int16Array, p.a16, mp * k), view(Float32Array, p.s16, mp)];
    const [a8, s8] = [view(Int8Array, p.a8, mp * k), view(Float32Array, p.s8, mp)];
    const [au7, su7, zu7] = [view(Uint8Array, p.au7, mp * k), view(Float32Array, p.su7, mp), view(Int32Array, p.zu7, mp)];
    const [au6, su6, zu6] = [view(Uint8Array, p.au6, mp * k), view(Float32Array, p.su6, mp), view(Int32Array, p.zu6, mp)];
    const deq = {  // activation element (t, i) as the family's kernel sees it, dequantized
      f32: (t, i) => af[t * k + i],
      i16: (t, i) => a16[t * k + i] * s16[t],
      i8: (t, i) => a8[t * k + i] * s8[t],
      u7: (t, i) => (au7[t * k + i] - zu7[t]) * su7[t],
      u6: (t, i) => (au6[t * k + i] - zu6[t]) * su6[t],
    };
    const sample = [];
    for (let t = 0; t < m; t += 13) for (let j = 0; j < n; j += 7) sample.push([t, j]);
    const reference = (act, weights) => sample.map(([t, j]) => {
      let s = 0;
      for (let i = 0; i < k; i++) s += act(t, i) * weights[j * k + i];
      return s;
    });
    const exact = reference(deq.f32, wf);
    const refs = { f32: exact };
    for (const q of ["i16", "i8", "u7", "u6"]) refs[q] = reference(deq[q], wq);
    const refOf = { f32: "f32", i16w16: "i16", i16w8: "i16", u7: "u7", u7s: "u7", u6p: "u6", i8: "i8" };
    const out = {};
    const median = (a) => a.slice().sort((u, v) => u - v)[a.length >> 1];
    for (const [name, ts] of Object.entries(times)) out[name] = { ms: median(ts), rounds_ms: ts };
    for (const name of kernels) {
      call(name);
      const c = view(Float32Array, p.c, mp * n);
      const ref = refs[refOf[family(name)]];
      let same = 0, vsF32 = 0, scale = 0;
      sample.forEach(([t, j], s) => {
        same = Math.max(same, Math.abs(c[t * n + j] - ref[s]));
        vsF32 = Math.max(vsF32, Math.abs(c[t * n + j] - exact[s]));
        scale = Math.max(scale, Math.abs(exact[s]));
      });
      Object.assign(out[name], { max_abs_error: same, max_abs_error_vs_f32_inputs: vsF32, output_scale: scale });
    }
    return { n, k, results: out };
  });
  const median = (a) => a.slice().sort((u, v) => u - v)[a.length >> 1];
  return { shapes: shapesOut, peaks: Object.fromEntries(peaks.map((nm) => [nm, { ms: median(peakTimes[nm]), rounds_ms: peakTimes[nm] }])),
           userAgent: navigator.userAgent };
}
