// The engines the benchmark compares, behind one interface:
//
//   const engine = await ENGINES[name](config);   // config: device, threads, artifactUrl, hfUrl, modelId
//   engine.info                                   // {device, threads, adapter, load: {..._ms}}
//   await engine.generate(prompt, n, stop)        // up to n greedy tokens: {tokens, ttft_ms, decode_ms}
//   await engine.profile?.(prompt, n)             // ms per kernel function (webrt only)
//   engine.unload()
//
// generate() returns the first token from the prompt's prefill (ttft_ms) and up to n - 1 more from
// decode steps (decode_ms, all of them together); it stops early once stop(tokensSoFar) is true
// (the run's time budget). Every engine decodes greedily from the same token ids, so their tokens
// must agree.

import { meter } from "./meter.js";

const now = () => performance.now();
const ORT_DIST = "/node_modules/onnxruntime-web/dist/";
// transformers.js bundles its own onnxruntime-web build; its wasm files sit in its nested package
const TJS = "/node_modules/@huggingface/transformers/dist/transformers.js";
const TJS_ORT_DIST = "/node_modules/@huggingface/transformers/node_modules/onnxruntime-web/dist/";

const argmaxLastRow = (data, vocab) => {
  let best = 0;
  const base = data.length - vocab;
  for (let i = 1; i < vocab; i++) if (data[base + i] > data[base + best]) best = i;
  return best;
};

/** webrt: loadModel + Generator, the path createEngine uses, without the tokenizer. */
async function webrtEngine({ artifactUrl, device, threads }) {
  const webrt = await import("/shell/index.js");
  const stages = {};
  let last = now();
  const t0 = now();
  const model = await webrt.loadModel(artifactUrl, { device, threads, onProgress: ({ stage }) => {
    if (!(stage in stages)) stages[stage] = now() - last;
    last = now();
  } });
  const total = now() - t0;
  // a build without wasm threads ignores the option; it must not pass for a threaded run
  const reported = model.threads ?? model.timings?.threads ?? (model.device === "wasm" ? 1 : null);
  if (device === "wasm" && threads > 1 && reported !== threads) {
    model.unload();
    return { unsupported: `this webrt build ran ${reported} wasm thread(s) when asked for ${threads}` };
  }
  const generator = new webrt.Generator(model);
  const chunk = generator.prefillChunk;
  const memoryBytes = () => model.gpuBytes;
  return {
    info: {
      device: model.device, threads: device === "wasm" ? reported : null, adapter: model.adapter,
      load: { total_ms: total, download_ms: model.timings.load_ms, init_ms: model.timings.pipelines_ms,
              tuning_ms: 0, stages_ms: stages },
    },
    async generate(prompt, n, stop = () => false) {
      generator.reset();
      const sampler = new webrt.Sampler({ temperature: 0 }, prompt);
      const t0 = now();
      let { token } = await generator.prefill(prompt, sampler);
      const ttft = now() - t0;
      const tokens = [token];
      const t1 = now();
      for (let i = 1; i < n && !stop(tokens.length); i++) {
        sampler.accept(token);
        token = await generator.decode(token, sampler);
        tokens.push(token);
        meter.sample();
      }
      return { tokens, ttft_ms: ttft, decode_ms: now() - t1 };
    },
    /**
     * Milliseconds per kernel function: the prompt's prefill (in the Generator's chunks) and n decode
     * steps. withPrefill false skips timing the prefill's kernels (it still runs, to fill the cache).
     */
    async profile(prompt, n, withPrefill = true) {
      const sampler = new webrt.Sampler({ temperature: 0 }, prompt);
      const allowAll = webrt.allowAllMask(model.manifest.model.config.vocab_size);
      const prefill = {};
      const decode = {};
      let offset = 0;
      let token = 0;
      const step = async (entry, ids, into) => {
        const [out] = await model.run(entry, {
          input_ids: { data: Int32Array.from(ids), shape: [1, ids.length] }, offset: { values: [offset] },
          token_mask: { data: allowAll, shape: [allowAll.length] }, ...sampler.inputs(),
        }, { readback: [0], profile: into });
        offset += ids.length;
        return out.data[0];
      };
      const t0 = now();
      for (let at = 0; at < prompt.length; at += chunk) token = await step("prefill", prompt.slice(at, at + chunk), withPrefill ? prefill : undefined);
      const t1 = now();
      for (let i = 0; i < n; i++) token = await step("decode", [token], decode);
      return { prefill_tokens: prompt.length, decode_tokens: n, prefill_ms: withPrefill ? prefill : null, decode_ms: decode,
               prefill_wall_ms: t1 - t0, decode_wall_ms: now() - t1 };
    },
    memoryBytes,
    unload: () => model.unload(),
  };
}

/** onnxruntime-web on its WASM EP or WebGPU EP, with the KV cache fed back step by step. */
async function ortEngine({ hfUrl, device, threads }) {
  const ort = await import(`${ORT_DIST}${device === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs"}`);
  ort.env.wasm.wasmPaths = ORT_DIST;
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.proxy = false;
  const config = await (await fetch(`${hfUrl}config.json`)).json();
  const layers = config.num_hidden_layers;
  const kvHeads = config.num_key_value_heads;
  const headDim = config.head_dim ?? config.hidden_size / config.num_attention_heads;
  const t0 = now();
  const bytes = new Uint8Array(await (await fetch(`${hfUrl}onnx/model.onnx`)).arrayBuffer());
  const t1 = now();
  const options = { executionProviders: [device], graphOptimizationLevel: "all" };
  if (device === "webgpu") {
    // keep the cache on the GPU between steps, as transformers.js does
    options.preferredOutputLocation = {};
    for (let i = 0; i < layers; i++) for (const kind of ["key", "value"]) options.preferredOutputLocation[`present.${i}.${kind}`] = "gpu-buffer";
  }
  const session = await ort.InferenceSession.create(bytes, options);
  const t2 = now();
  const int64 = (values, dims) => new ort.Tensor("int64", BigInt64Array.from(values, BigInt), dims);
  const release = (tensors) => Object.values(tensors).forEach((t) => t.location === "gpu-buffer" && t.dispose());

  return {
    info: { device, threads, adapter: null, ort_version: ort.env.versions?.web ?? null,
            load: { total_ms: t2 - t0, download_ms: t1 - t0, init_ms: t2 - t1, tuning_ms: 0 } },
    async generate(prompt, n, stop = () => false) {
      let past = {};
      for (let i = 0; i < layers; i++) {
        for (const kind of ["key", "value"]) past[`past_key_values.${i}.${kind}`] = new ort.Tensor("float32", new Float32Array(0), [1, kvHeads, 0, headDim]);
      }
      let length = 0;
      const step = async (ids) => {
        length += ids.length;
        const feeds = { input_ids: int64(ids, [1, ids.length]), attention_mask: int64(new Array(length).fill(1), [1, length]),
                        position_ids: int64(ids.map((_, i) => length - ids.length + i), [1, ids.length]), ...past };
        const out = await session.run(Object.fromEntries(session.inputNames.map((name) => [name, feeds[name]])));
        const token = argmaxLastRow(out.logits.data, out.logits.dims.at(-1));
        release(past);
        past = {};
        for (let i = 0; i < layers; i++) for (const kind of ["key", "value"]) past[`past_key_values.${i}.${kind}`] = out[`present.${i}.${kind}`];
        meter.sample();
        return token;
      };
      const t0 = now();
      let token = await step(prompt);
      const ttft = now() - t0;
      const tokens = [token];
      const t1 = now();
      for (let i = 1; i < n && !stop(tokens.length); i++) tokens.push(token = await step([token]));
      const decode = now() - t1;
      release(past);
      return { tokens, ttft_ms: ttft, decode_ms: decode };
    },
    unload: () => session.release(),
  };
}

/** transformers.js: AutoModelForCausalLM.generate, greedy, with a streamer that timestamps each token. */
async function transformersEngine({ modelId, device, threads }) {
  const tjs = await import(TJS);
  Object.assign(tjs.env, { allowRemoteModels: false, allowLocalModels: true, localModelPath: "/model/",
                           useBrowserCache: false, useWasmCache: false });
  tjs.env.backends.onnx.wasm.wasmPaths = TJS_ORT_DIST;
  tjs.env.backends.onnx.wasm.numThreads = threads;
  class Stop extends tjs.StoppingCriteria {
    constructor(promptLength, stop) {
      super();
      Object.assign(this, { promptLength, stop });
    }

    _call(inputIds) {
      return inputIds.map((ids) => this.stop(ids.length - this.promptLength));
    }
  }
  const t0 = now();
  const model = await tjs.AutoModelForCausalLM.from_pretrained(modelId, { dtype: "fp32", device });
  const total = now() - t0;
  return {
    info: { device, threads, adapter: null, transformers_version: tjs.env.version,
            load: { total_ms: total, download_ms: null, init_ms: null, tuning_ms: 0 } },
    async generate(prompt, n, stop = () => false) {
      const ids = new tjs.Tensor("int64", BigInt64Array.from(prompt, BigInt), [1, prompt.length]);
      const mask = new tjs.Tensor("int64", new BigInt64Array(prompt.length).fill(1n), [1, prompt.length]);
      const stamps = []; // the prompt, then one per new token
      const streamer = { put: () => { stamps.push(now()); meter.sample(); }, end: () => {} };
      const stopping_criteria = [new Stop(prompt.length, stop)];
      const t0 = now();
      const out = await model.generate({ input_ids: ids, attention_mask: mask, max_new_tokens: n, do_sample: false, streamer, stopping_criteria });
      const tokens = Array.from(out.data.slice(prompt.length), Number);
      return { tokens, ttft_ms: stamps[1] - t0, decode_ms: stamps.at(-1) - stamps[1] };
    },
    unload: () => model.dispose(),
  };
}

export const ENGINES = { webrt: webrtEngine, ort: ortEngine, "transformers.js": transformersEngine };
