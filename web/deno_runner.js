// The JS shell outside a browser: webrt/deno_driver.py runs this file in Deno (WebGPU through wgpu,
// e.g. over Mesa's lavapipe) with one job as JSON on stdin, and reads JSON lines from stdout:
//   {"stage": "..."} as each stage starts (the driver's watchdog names the one that hung),
//   {"delta": "..."} for each streamed text piece of a chat, and last {"result": {...}} or {"error": "Name: message"}.
// The jobs mirror webrt/browser.py's page scripts: forward (logits), entries (raw entry calls), chat,
// and script (any such page script).

import * as webrt from "./index.js";

const encoder = new TextEncoder();
const emit = (message) => Deno.stdout.writeSync(encoder.encode(`${JSON.stringify(message)}\n`));
const stage = (name) => emit({ stage: name });
const onProgress = (p) => stage(`loading the model (${p.stage})`);

/** What the model says about where it runs, shared by every job's result. */
function placement(info) {
  return { device: info.device, device_reason: info.device_reason ?? info.deviceReason, adapter: info.adapter,
           timings: info.timings, threads: info.threads, threads_reason: info.threads_reason ?? info.threadsReason,
           tuning: info.tuning, precision: info.precision, precision_reason: info.precision_reason ?? info.precisionReason };
}

const JOBS = {
  /** A page script of the Python drivers and tests, `async (args, stage) => result`, with the shell
   * as `webrt` instead of the page's `window.webrt` (webrt/deno_driver.py run_script). */
  async script({ source, args }) {
    const job = new Function("webrt", `return (${source});`)(webrt);
    return await job(args, stage);
  },

  async forward({ url, device, token_lists: tokenLists, options }) {
    const model = await webrt.loadModel(url, { device, ...options, onProgress });
    const results = [];
    for (const [i, tokens] of tokenLists.entries()) {
      stage(`forward pass ${i + 1} of ${tokenLists.length} (${tokens.length} tokens)`);
      const { logits, forward_ms } = await model.forward(tokens);
      results.push({ logits: logits.map((row) => Array.from(row)), forward_ms });
    }
    const info = { ...placement(model), memory_bytes: model.gpuBytes, results };
    model.unload();
    return info;
  },

  async entries({ url, device, jobs, options }) {
    const model = await webrt.loadModel(url, { device, ...options, onProgress });
    const outputs = [];
    for (const [entry, inputs] of jobs) {
      stage(`running ${entry}`);
      const typed = {};
      for (const [name, x] of Object.entries(inputs)) {
        const Typed = { int32: Int32Array, uint32: Uint32Array, float32: Float32Array }[x.dtype];
        typed[name] = { data: Typed.from(x.data), shape: x.shape };
      }
      const [out] = await model.run(entry, typed);
      outputs.push({ data: Array.from(out.data), shape: out.shape });
    }
    model.unload();
    return { outputs };
  },

  /** One or more requests (turns) on one engine; each streams, and its result is kept. */
  async chat({ url, device, requests, options }) {
    const engine = await webrt.createEngine(url, { device, onProgress, ...options });
    const replies = [];
    for (const [turn, request] of requests.entries()) {
      let last = null;
      let text = "";
      let n = 0;
      stage(`turn ${turn + 1}: prefill (the first token)`);
      for await (const chunk of await engine.chat.completions.create({ ...request, stream: true })) {
        stage(`turn ${turn + 1}: decode (token ${++n})`);
        const delta = chunk.choices[0].delta.content;
        if (delta) {
          text += delta;
          emit({ delta });
        }
        last = chunk;
      }
      const extra = last.usage.extra;
      replies.push({ text, token_ids: extra.token_ids, finish_reason: last.choices[0].finish_reason,
                     prefill_tokens_per_s: extra.prefill_tokens_per_s, decode_tokens_per_s: extra.decode_tokens_per_s,
                     ttft_ms: extra.time_to_first_token_ms, usage: last.usage });
    }
    const info = { ...placement(engine.info), memory_bytes: engine.model.gpuBytes };
    engine.unload();
    return { ...info, replies };
  },
};

const job = JSON.parse(new TextDecoder().decode(await new Response(Deno.stdin.readable).arrayBuffer()));
try {
  if (!(job.job in JOBS)) throw new TypeError(`unknown job ${job.job}; one of ${Object.keys(JOBS).join(", ")}`);
  emit({ result: await JOBS[job.job](job) });
} catch (err) {
  emit({ error: `${err.name}: ${err.message}` });
}
// the wasm thread pool's workers and the GPU device would keep the process alive
Deno.exit(0);
