// Token-level generation over the prefill/decode entries, with the KV cache's bookkeeping.
// `cached` lists the tokens whose keys and values sit in the cache, in position order; a new
// prompt that starts with them only prefills the rest (prefix reuse across chat turns).
// Every sampling step passes the sampler's token bitmask (a grammar's allowed tokens), or all ones.

import { GrammarError, InputError } from "./errors.js";

/** A token bitmask that allows every token: one int32 word of ones per 32 tokens. */
export const allowAllMask = (vocab) => new Int32Array(Math.ceil(vocab / 32)).fill(-1);

/**
 * A prefill/decode entry's inputs for token ids at cache position offset, sampled greedily with
 * no grammar mask, penalties, bias or logprobs: what the tuner and the timing tools run.
 */
export function greedyInputs(vocab, ids, offset) {
  return {
    input_ids: { data: Int32Array.from(ids), shape: [1, ids.length] }, offset: { values: [offset] },
    token_mask: { data: allowAllMask(vocab), shape: [Math.ceil(vocab / 32)] },
    penalty_ids: { data: new Int32Array(0), shape: [0] }, penalty_counts: { data: new Float32Array(0), shape: [0] },
    sampling: { data: Float32Array.of(0, 1, 0, 0), shape: [4] }, seed: { values: [1] },
    bias_ids: { data: new Int32Array(0), shape: [0] }, bias_values: { data: new Float32Array(0), shape: [0] },
    logprobs: { values: [0] },
  };
}

export class Generator {
  constructor(model, { prefillChunk = 128 } = {}) {
    this.model = model;
    this.prefillChunk = prefillChunk;
    this.contextWindow = model.contextWindow; // the page's (loadModel contextWindow): the KV cache holds that many
    // a model whose sliding layers keep a ring of KV rows takes at most this many tokens per prefill
    this.maxChunk = model.manifest.model.config.max_prefill_chunk ?? Infinity;
    this.cached = [];
    this.allowAll = allowAllMask(model.manifest.model.config.vocab_size);
    this.masks = model.manifest.entries.decode?.inputs.some((i) => i.name === "token_mask") ?? false;
    // logit_bias (other than -100) and logprobs are done by entries with these inputs (webrt >= issue 19)
    this.deviceLogprobs = model.manifest.entries.decode?.inputs.some((i) => i.name === "logprobs") ?? false;
  }

  reset() {
    this.cached = [];
  }

  /** Feed the prompt (reusing the cached prefix) and return the first sampled token. */
  async prefill(tokens, sampler) {
    if (!tokens.length) throw new InputError("the prompt is empty");
    if (tokens.length > this.contextWindow) {
      throw new InputError(`the prompt has ${tokens.length} tokens, the context window is ${this.contextWindow}`);
    }
    let start = 0;
    while (start < this.cached.length && start < tokens.length && this.cached[start] === tokens[start]) start++;
    if (start === tokens.length) start -= 1; // the last token must run again to give logits
    this.cached = tokens.slice(0, start);
    let token = null;
    const size = Math.min(this.prefillChunk, this.maxChunk);
    for (let at = start; at < tokens.length; at += size) {
      const chunk = tokens.slice(at, Math.min(at + size, tokens.length));
      const last = at + chunk.length === tokens.length;
      token = await this.step("prefill", chunk, sampler, last);
    }
    return { token, reused: start };
  }

  /** Append one token and return the next sampled one. */
  async decode(token, sampler) {
    if (this.cached.length >= this.contextWindow) {
      throw new InputError(`the context window of ${this.contextWindow} tokens is full`);
    }
    return this.step("decode", [token], sampler, true);
  }

  async step(entry, chunk, sampler, sample) {
    const offset = this.cached.length;
    const logprobs = sample && sampler.logprobs !== null;
    const readback = !sample ? [] : [0, ...(sampler.needsLogits ? [1] : []), ...(logprobs ? [2, 3] : [])];
    const masked = sample && sampler.masksTokens;
    if (masked && !this.masks) {
      throw new GrammarError("this artifact's entries take no token_mask, so they cannot follow a grammar; recompile it with this webrt");
    }
    // the grammar's mask comes `later`: the WebGPU executor asks for it once the forward pass is
    // submitted, so xgrammar fills it while the device runs (plan_executor.js); `data` stands in
    // for the shape checks
    const width = this.allowAll.length;
    const tokenMask = masked
      ? { data: this.allowAll, shape: [width], later: async (inFlight) => (await sampler.tokenMask(inFlight)) ?? this.allowAll }
      : { data: this.allowAll, shape: [width] };
    if ((logprobs || sampler.bias.size) && !this.deviceLogprobs) {
      throw new InputError("this artifact's entries compute no logprobs and no logit_bias other than -100; recompile it with this webrt");
    }
    const [token, logits, topIds, topLogprobs] = await this.model.run(entry, {
      input_ids: { data: Int32Array.from(chunk), shape: [1, chunk.length] },
      offset: { values: [offset] },
      token_mask: tokenMask,
      ...sampler.inputs(),
    }, { readback });
    this.cached.push(...chunk);
    const top = logprobs ? { ids: topIds.data, logprobs: topLogprobs.data } : null;
    return sample ? sampler.pick(token.data[0], logits?.data, top) : null;
  }
}
