// Sampling settings and state for one generation. The device does the common cases (penalties,
// logit bias, greedy, temperature via Gumbel-max) and returns one token id; with top-k or top-p the
// sampler reads the processed logits back and samples here. See webrt/models/sampling.py.
// With logprobs the device also returns the chosen token's log-probability and the 20 most likely
// tokens with theirs (never the vocabulary row); `last` holds them for the token just picked.
// With a grammar (a GrammarConstraint, grammar.js) the sampler also holds its state: the next
// step's token bitmask comes from it, and every accepted token advances it.

import { InputError } from "./errors.js";
import { allowAllMask } from "./generator.js";

/** mulberry32: a small seeded PRNG, so a seed reproduces a reply. */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const DEFAULT_SAMPLING = {
  temperature: 1.0, top_p: 1.0, top_k: 0, repetition_penalty: 1.0, frequency_penalty: 0.0, presence_penalty: 0.0,
  logit_bias: [],
};

export class Sampler {
  /** options.logit_bias: [[token id, bias]]; vocabSize bounds the ids and sizes the token mask. */
  constructor(options = {}, promptTokens = [], constraint = null, vocabSize = null) {
    const o = { ...DEFAULT_SAMPLING, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined && v !== null)) };
    if (!(o.temperature >= 0)) throw new InputError(`temperature must be >= 0, got ${o.temperature}`);
    if (!(o.top_p > 0 && o.top_p <= 1)) throw new InputError(`top_p must be in (0, 1], got ${o.top_p}`);
    if (!(Number.isInteger(o.top_k) && o.top_k >= 0)) throw new InputError(`top_k must be an integer >= 0, got ${o.top_k}`);
    if (!(o.repetition_penalty > 0)) throw new InputError(`repetition_penalty must be > 0, got ${o.repetition_penalty}`);
    this.options = o;
    this.constraint = constraint;
    this.vocabSize = vocabSize;
    // a bias of -100 keeps the token out through the token mask; any other bias is added to the
    // logits by the entry (bias_ids / bias_values); both on the device
    this.banned = [];
    this.bias = new Map();
    for (const [id, bias] of o.logit_bias) {
      if (vocabSize !== null && id >= vocabSize) throw new InputError(`logit_bias names token ${id}; the vocabulary has ${vocabSize} tokens`);
      if (bias <= -100) this.banned.push(id);
      else if (bias !== 0) this.bias.set(id, bias);
    }
    // logprobs: null (off), or how many alternatives per token (top_logprobs, 0-20)
    this.logprobs = o.logprobs ?? null;
    this.last = null;
    this.random = mulberry32(o.seed ?? Math.floor(Math.random() * 2 ** 31));
    this.seen = new Map(); // token id -> count in the reply (0 for prompt-only tokens)
    if (o.repetition_penalty !== 1) for (const t of promptTokens) if (!this.seen.has(t)) this.seen.set(t, 0);
  }

  get penalized() {
    const o = this.options;
    return o.repetition_penalty !== 1 || o.frequency_penalty !== 0 || o.presence_penalty !== 0;
  }

  /** Top-k / top-p need the distribution's order: the logits are read back for them. */
  get needsLogits() {
    return this.options.temperature > 0 && (this.options.top_k > 0 || this.options.top_p < 1);
  }

  /** The sampling inputs of the prefill/decode entries for the next step. */
  inputs() {
    const ids = this.penalized ? [...this.seen.keys()] : [];
    const o = this.options;
    return {
      penalty_ids: { data: Int32Array.from(ids), shape: [ids.length] },
      penalty_counts: { data: Float32Array.from(ids.map((t) => this.seen.get(t))), shape: [ids.length] },
      sampling: { data: Float32Array.of(o.temperature, o.repetition_penalty, o.frequency_penalty, o.presence_penalty), shape: [4] },
      seed: { values: [Math.floor(this.random() * 2 ** 31)] },
      ...this.biasInputs(),
      logprobs: { values: [this.logprobs === null ? 0 : 1] },
    };
  }

  /** bias_ids / bias_values: none without a logit_bias. */
  biasInputs() {
    const ids = Int32Array.from(this.bias.keys());
    const values = Float32Array.from(this.bias.values());
    return { bias_ids: { data: ids, shape: [ids.length] }, bias_values: { data: values, shape: [values.length] } };
  }

  /**
   * The next token: the device's choice, or a top-k / top-p draw from the read-back logits.
   * top ({ids: Int32Array [20], logprobs: Float32Array [21]}, with logprobs on): the device's
   * log-probabilities, kept in `last` as {token, logprob, top: [[id, logprob]]}.
   */
  pick(deviceToken, logits, top = null) {
    const token = this.needsLogits ? this.draw(logits) : deviceToken;
    if (top) {
      // the device scored its own choice; a host draw's comes from the logits it read back and
      // the device's log-sum-exp (logprob of the top token = its logit - lse)
      const logprob = token === deviceToken ? top.logprobs[0] : logits[token] - logits[top.ids[0]] + top.logprobs[1];
      const alternatives = Array.from(top.ids.subarray(0, this.logprobs), (id, i) => [id, top.logprobs[i + 1]]);
      this.last = { token, logprob, top: alternatives };
    }
    return token;
  }

  /** A top-k / top-p draw (or greedy) from the read-back logits. */
  draw(logits) {
    const { temperature, top_k, top_p } = this.options;
    if (temperature === 0) return logits.reduce((best, x, i) => (x > logits[best] ? i : best), 0);
    let order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
    if (top_k > 0) order = order.slice(0, top_k);
    const max = logits[order[0]];
    const weights = order.map((t) => Math.exp((logits[t] - max) / temperature));
    const total = weights.reduce((a, b) => a + b, 0);
    let kept = 0;
    let mass = 0;
    while (kept < order.length && mass < top_p * total) mass += weights[kept++];
    let r = this.random() * mass;
    for (let i = 0; i < kept; i++) {
      r -= weights[i];
      if (r <= 0) return order[i];
    }
    return order[kept - 1];
  }

  /** Whether the next step needs a token mask (a grammar, or a logit_bias of -100). */
  get masksTokens() {
    return this.constraint !== null || this.banned.length > 0;
  }

  /**
   * The allowed tokens of the next step (Int32Array bitmask), or null when any token may come.
   * inFlight: the device is running this step's forward pass meanwhile (counted in the grammar's stats).
   */
  async tokenMask(inFlight = false) {
    const mask = this.constraint ? await this.constraint.mask(inFlight) : null;
    if (!this.banned.length) return mask;
    const out = mask ? Int32Array.from(mask) : allowAllMask(this.vocabSize);
    for (const id of this.banned) out[id >> 5] &= ~(1 << (id & 31));
    return out;
  }

  accept(token) {
    this.constraint?.accept(token);
    this.seen.set(token, (this.seen.get(token) ?? 0) + 1);
  }
}
