// Sentence embeddings over an encoder artifact (model.task "embedding", entry `embed`), in OpenAI's
// shape:
//
//   const engine = await createEngine("./all-MiniLM-L6-v2/");
//   const { data, usage } = await engine.embeddings.create({ input: ["a cat", "a dog"] });
//   data[1].embedding  // number[hidden] (or `dimensions` of them)
//
// Inputs are tokenized with the checkpoint's special tokens, truncated where the model truncates
// (max_seq_length), sorted by length, and run in padded batches of at most `batchSize` sentences and
// `batchTokens` padded tokens: the attention and the pooling inside the plan read the attention
// mask, so padding never changes a result.

import { tokenizerLibraries } from "./dependencies.js";
import { ArtifactFormatError, EngineStateError, InputError } from "./errors.js";
import { fetchVerified } from "./loader.js";

export const MAX_INPUTS = 2048; // OpenAI's limit on inputs per request
export const BATCH_SIZE = 32;   // sentences per run of the embed entry, at most
// padded tokens per run, at most (unless one sentence is longer): on wasm, all-MiniLM's matmuls ran
// 1.5-2x slower per token at 2048 rows than at 256-512 (their weights fall out of cache)
export const BATCH_TOKENS = 512;

export const isEmbeddingModel = (manifest) => manifest.model?.task === "embedding";

/** Check an OpenAI embeddings request; returns {inputs: string[], dimensions}. */
export function parseEmbeddingRequest(request, hidden) {
  const input = request?.input;
  const inputs = typeof input === "string" ? [input] : input;
  if (!Array.isArray(inputs) || inputs.length === 0) {
    throw new InputError("input must be a non-empty string or a non-empty list of strings");
  }
  if (inputs.length > MAX_INPUTS) {
    throw new InputError(`input holds ${inputs.length} strings; at most ${MAX_INPUTS} fit in one request: split it`);
  }
  for (const [i, text] of inputs.entries()) {
    if (typeof text !== "string") throw new InputError(`input[${i}] is ${text === null ? "null" : typeof text}; each input must be a string`);
    if (text.length === 0) throw new InputError(`input[${i}] is an empty string; each input must hold some text`);
  }
  const { dimensions, encoding_format: format } = request;
  if (dimensions !== undefined && dimensions !== null && !(Number.isInteger(dimensions) && dimensions >= 1 && dimensions <= hidden)) {
    throw new InputError(`dimensions must be an integer in [1, ${hidden}], got ${JSON.stringify(dimensions)}`);
  }
  if (format !== undefined && format !== "float") {
    throw new InputError(`encoding_format ${JSON.stringify(format)} is not supported; use "float"`);
  }
  return { inputs, dimensions: dimensions ?? hidden };
}

/** tokenizer.json with the checkpoint's special tokens ([CLS] ... [SEP], <s> ... </s>) around each input. */
export class EmbeddingTokenizer {
  static async load(base, manifest) {
    const entry = (manifest.files ?? []).find((f) => f.file === "tokenizer.json");
    if (!entry) throw new ArtifactFormatError("the artifact has no tokenizer.json; compile it from a checkpoint that has one");
    const configEntry = (manifest.files ?? []).find((f) => f.file === "tokenizer_config.json");
    const text = async (e) => new TextDecoder().decode(await fetchVerified(base, e.file, e));
    const config = configEntry ? JSON.parse(await text(configEntry)) : {};
    const { Tokenizer } = await tokenizerLibraries();
    return new EmbeddingTokenizer(new Tokenizer(JSON.parse(await text(entry)), config));
  }

  constructor(tokenizer) {
    this.tokenizer = tokenizer;
    // the special tokens the post-processor puts before and after a text, found once: truncation
    // cuts the text's own tokens, then they are added back, as transformers does
    const plain = this.plain("a");
    const full = tokenizer.encode("a", { add_special_tokens: true }).ids;
    const at = full.findIndex((_, i) => plain.every((id, j) => full[i + j] === id));
    this.prefix = full.slice(0, at);
    this.suffix = full.slice(at + plain.length);
  }

  plain(text) {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  /** Token ids of text with its special tokens, at most maxLength of them. */
  encode(text, maxLength) {
    const room = Math.max(0, maxLength - this.prefix.length - this.suffix.length);
    return [...this.prefix, ...this.plain(text).slice(0, room), ...this.suffix];
  }
}

export class Embeddings {
  constructor(model, tokenizer, { batchSize = BATCH_SIZE, batchTokens = BATCH_TOKENS } = {}) {
    for (const [name, value] of Object.entries({ batchSize, batchTokens })) {
      if (!(Number.isInteger(value) && value >= 1)) throw new InputError(`${name} must be an integer >= 1, got ${JSON.stringify(value)}`);
    }
    this.model = model;
    this.tokenizer = tokenizer;
    this.batchSize = batchSize;
    this.batchTokens = batchTokens;
    this.config = model.manifest.model.config;
  }

  async create(request) {
    const { inputs, dimensions } = parseEmbeddingRequest(request, this.config.hidden_size);
    const t0 = performance.now();
    const tokens = inputs.map((text) => this.tokenizer.encode(text, this.config.max_seq_length));
    const vectors = new Array(inputs.length);
    // longest first, so each batch pads its sentences to lengths close to their own
    const order = tokens.map((_, i) => i).sort((a, b) => tokens[b].length - tokens[a].length);
    let batches = 0;
    for (let start = 0; start < order.length;) {
      // the first (longest) sentence sets the padded length of the batch
      const fit = Math.floor(this.batchTokens / tokens[order[start]].length);
      const chunk = order.slice(start, start + Math.max(1, Math.min(this.batchSize, fit)));
      const rows = await this.embedBatch(chunk.map((i) => tokens[i]));
      chunk.forEach((i, r) => { vectors[i] = rows[r]; });
      start += chunk.length;
      batches += 1;
    }
    const promptTokens = tokens.reduce((sum, t) => sum + t.length, 0);
    const totalMs = performance.now() - t0;
    return {
      object: "list",
      model: this.model.manifest.model.name,
      data: vectors.map((v, index) => ({ object: "embedding", index, embedding: this.shorten(v, dimensions) })),
      usage: {
        prompt_tokens: promptTokens, total_tokens: promptTokens,
        extra: { total_ms: totalMs, sentences_per_s: inputs.length / (totalMs / 1000), batches,
                 device: this.model.device, threads: this.model.threads },
      },
    };
  }

  /** Sentence vectors for token lists, right-padded to the longest: one run of the embed entry. */
  async embedBatch(lists) {
    const seq = Math.max(...lists.map((t) => t.length));
    const ids = new Int32Array(lists.length * seq).fill(this.config.pad_token_id);
    const mask = new Int32Array(lists.length * seq);
    lists.forEach((t, r) => {
      ids.set(t, r * seq);
      mask.fill(1, r * seq, r * seq + t.length);
    });
    const shape = [lists.length, seq];
    const [out] = await this.model.run("embed", { input_ids: { data: ids, shape }, attention_mask: { data: mask, shape } });
    const hidden = this.config.hidden_size;
    return lists.map((_, r) => out.data.slice(r * hidden, (r + 1) * hidden));
  }

  /** The first `dimensions` values, normalized again when the model's embeddings are unit vectors. */
  shorten(vector, dimensions) {
    const v = Array.from(vector.subarray(0, dimensions));
    if (dimensions === vector.length || !this.config.normalize) return v;
    const norm = Math.max(Math.hypot(...v), 1e-12);
    return v.map((x) => x / norm);
  }
}

/** The engine for an embedding model: embeddings.create, info, unload (no chat). */
export class EmbeddingEngine {
  static async create(model, options = {}) {
    return new EmbeddingEngine(model, await EmbeddingTokenizer.load(model.base, model.manifest), options);
  }

  constructor(model, tokenizer, options = {}) {
    this.model = model;
    this.embeddingsApi = new Embeddings(model, tokenizer, options);
    this.embeddings = { create: (request) => this.embed(request) };
    const notChat = () => Promise.reject(new EngineStateError(
      `${model.manifest.model.name} is an embedding model: use engine.embeddings.create, or load a language model to chat`));
    this.chat = { completions: { create: notChat } };
    this.completions = { create: notChat };
    this.busy = false;
  }

  get info() {
    const m = this.model;
    return { model: m.manifest.model.name, task: "embedding", device: m.device, device_reason: m.deviceReason,
             threads: m.threads, threads_reason: m.threadsReason, wasm_build: m.wasmBuild, adapter: m.adapter,
             timings: m.timings, tuning: m.tuning, dimensions: m.manifest.model.config.hidden_size,
             max_seq_length: m.manifest.model.config.max_seq_length };
  }

  async embed(request) {
    if (!this.model) throw new EngineStateError("the engine was unloaded; create a new one");
    if (this.busy) throw new EngineStateError("a request is already running; await it first");
    this.busy = true;
    try {
      return await this.embeddingsApi.create(request);
    } finally {
      this.busy = false;
    }
  }

  interrupt() {}

  resetChat() {}

  unload() {
    this.model?.unload();
    this.model = null;
  }
}
