// One engine's benchmark run in this page: load, then for each prompt (shortest first) a prefill
// and greedy decode, within a time budget; then, for webrt, a per-kernel profile.

import { ENGINES } from "./engines.js";
import { meter } from "./meter.js";

const now = () => performance.now();

// Decoding stops early past the budget, but never before this many tokens (so tokens still compare)
const MIN_TOKENS = 5;

/**
 * config: {engine, device, threads, artifactUrl | hfUrl + modelId, prompts: [[ids]], decodeTokens,
 * budgetMs, profileTokens}. The budget covers the warm-up and the prompts. A prompt whose predicted
 * time (from the previous one) would overrun it is skipped and says so; the first always runs.
 * Past the budget, decoding stops after MIN_TOKENS tokens.
 */
export async function runEngine(config) {
  try {
    const t0 = now();
    const engine = await ENGINES[config.engine](config);
    if (engine.unsupported) return { unsupported: engine.unsupported };
    meter.sample();
    // warm-up: first-use costs (JIT tiers, shader compilation, allocation) stay out of the rows
    const start = now();
    const deadline = start + config.budgetMs;
    const stop = (tokens) => tokens >= MIN_TOKENS && now() > deadline;
    await engine.generate(config.prompts[0].slice(0, 8), Math.min(3, config.decodeTokens));
    const warmupMs = now() - start;
    const rows = [];
    let previous = null;
    for (const prompt of config.prompts) {
      if (previous) {
        const predicted = previous.ttft_ms * (prompt.length / previous.prompt_tokens) + previous.decode_ms;
        const left = config.budgetMs - (now() - start);
        if (predicted > left) {
          rows.push({ prompt_tokens: prompt.length, skipped: `predicted ${(predicted / 1000).toFixed(0)} s, ` +
                      `${Math.max(0, left / 1000).toFixed(0)} s of the ${(config.budgetMs / 1000).toFixed(0)} s budget left` });
          continue;
        }
      }
      const r = await engine.generate(prompt, config.decodeTokens, stop);
      const steps = r.tokens.length - 1;
      previous = { prompt_tokens: prompt.length, ...r };
      rows.push({ prompt_tokens: prompt.length, ttft_ms: r.ttft_ms, prefill_tokens_per_s: prompt.length / (r.ttft_ms / 1000),
                  decode_tokens_per_s: steps > 0 ? steps / (r.decode_ms / 1000) : null, tokens: r.tokens });
    }
    let profile = null;
    if (config.profileTokens && engine.profile) {
      // each kernel timed alone is slow on a software GPU: past the budget, only decode's kernels
      profile = await engine.profile(config.prompts[0], config.profileTokens, now() < deadline);
    }
    const memory = meter.report();
    if (engine.memoryBytes && engine.info.device === "wasm") {
      memory.wasm_memory_bytes = Math.max(memory.wasm_memory_bytes, engine.memoryBytes());
    }
    engine.unload();
    return { info: engine.info, warmup_ms: warmupMs, rows, memory, profile, wall_ms: now() - t0, cross_origin_isolated: crossOriginIsolated };
  } catch (err) {
    return { error: `${err.name}: ${err.message}` };
  }
}
