// The embedding benchmark's page side (bench/embeddings.py serves it as /model/embeddings_engines.js
// beside the models): one engine per page, sentences/s for batches of texts, and the vectors of the
// first batch so the engines' answers can be compared.
//
//   webrt:           createEngine(artifact, {device: "wasm", threads, wasmBuild}) -> embeddings.create({input})
//   transformers.js: pipeline("feature-extraction", ..., {dtype, device: "wasm"}) with mean pooling
//                    and normalize, as all-MiniLM-L6-v2's model card says

const TJS = "/node_modules/@huggingface/transformers/dist/transformers.js";
// transformers.js bundles its own onnxruntime-web build; its wasm files sit in its nested package
const TJS_ORT_DIST = "/node_modules/@huggingface/transformers/node_modules/onnxruntime-web/dist/";
const now = () => performance.now();

async function webrtEngine({ artifactUrl, threads, wasmBuild }) {
  // the engine's own batching: runs of at most 32 sentences and 512 padded tokens; wasmBuild
  // undefined: the build the shell picks (relaxed SIMD where the browser has it)
  const engine = await window.webrt.createEngine(artifactUrl, { device: "wasm", threads, wasmBuild });
  return {
    info: { threads: engine.info.threads, threads_reason: engine.info.threads_reason, wasm_build: engine.info.wasm_build },
    embed: async (texts) => (await engine.embeddings.create({ input: texts })).data.map((d) => d.embedding),
    unload: () => engine.unload(),
  };
}

async function transformersEngine({ threads, dtype }) {
  const tjs = await import(TJS);
  Object.assign(tjs.env, { allowRemoteModels: false, allowLocalModels: true, localModelPath: "/model/",
                           useBrowserCache: false, useWasmCache: false });
  tjs.env.backends.onnx.wasm.wasmPaths = TJS_ORT_DIST;
  tjs.env.backends.onnx.wasm.numThreads = threads;
  const extractor = await tjs.pipeline("feature-extraction", "hf", { dtype, device: "wasm" });
  return {
    info: { threads, version: tjs.env.version, dtype },
    embed: async (texts) => (await extractor(texts, { pooling: "mean", normalize: true })).tolist(),
    unload: () => extractor.dispose(),
  };
}

/** config: {engine, threads, batch, texts, measureMs, minRuns, ...}: warm up once, then embed
 * `batch` texts at a time (cycling through texts) until measureMs has passed and minRuns are done. */
export async function runEmbeddingBench(config) {
  try {
    const t0 = now();
    const engine = await (config.engine === "webrt" ? webrtEngine : transformersEngine)(config);
    const loadMs = now() - t0;
    const batchAt = (i) => Array.from({ length: config.batch }, (_, j) => config.texts[(i * config.batch + j) % config.texts.length]);
    const first = await engine.embed(batchAt(0)); // warm-up: JIT tiers, allocation
    const times = [];
    const start = now();
    for (let i = 1; times.length < config.minRuns || now() - start < config.measureMs; i++) {
      const t = now();
      await engine.embed(batchAt(i));
      times.push(now() - t);
    }
    await engine.unload();
    times.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)];
    return { ...engine.info, load_ms: loadMs, runs: times.length, median_ms: median,
             sentences_per_s: config.batch / (median / 1000), first: first.slice(0, 4) };
  } catch (err) {
    return { error: `${err.name}: ${err.message}` };
  }
}
