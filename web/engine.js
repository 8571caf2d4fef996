// The engine: an OpenAI-shaped API over a loaded model. It is a thin coordinator; the tokenizer,
// sampler, generator (KV cache bookkeeping), text stream and protocol live in their own modules.
//
//   const engine = await createEngine("./SmolLM2-135M-Instruct-q4f32/", { onProgress });
//   const reply = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }] });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true })) ...

import { EmbeddingEngine, EmbeddingTokenizer, isEmbeddingModel } from "./embeddings.js";
import { ContextWindowError, DeviceLostError, EngineStateError } from "./errors.js";
import { Generator } from "./generator.js";
import { GrammarCompiler } from "./grammar.js";
import { askForGarbageCollection } from "./memory.js";
import { loadModel } from "./model.js";
import {
  chatChunk, chatCompletion, joinLogprobs, newId, parseChatRequest, parseCompletionRequest, textChunk, textCompletion,
  tokenLogprob,
} from "./openai_protocol.js";
import { Sampler } from "./sampler.js";
import { TextStream } from "./text_stream.js";
import { ChatTokenizer } from "./tokenizer.js";
import { callFormat, toolGrammar, toolPrompt } from "./tools.js";

/**
 * options: device ("auto": WebGPU on a hardware adapter, else wasm; see loadModel), onProgress({stage, loaded, total}), prefillChunk (tokens per prefill
 * step, 128), contextPolicy ("error" | "sliding"; also accepted as context_policy), contextWindow (positions the KV cache
 * holds, see loadModel), tuning (false |
 * "auto" | true | {budget_s}: schedule tuning, see loadModel). For an embedding model: batchSize (32)
 * and batchTokens (512), the most sentences and padded tokens per kernel run (embeddings.js).
 */
export async function createEngine(url, { device = "auto", threads, wasmBuild, contextWindow, tuning, shareDevice, onProgress = () => {}, prefillChunk = 128, contextPolicy, context_policy, batchSize, batchTokens } = {}) {
  // The tokenizer is built before the weights download, and its parse garbage collected then
  // (memory.js): for Gemma 3's 262,144 tokens ~190 MB is allocated and ~40 MB kept. Built after
  // the weights, that garbage came on top of the model and set the page's peak
  // (bench/gemma3_wllama.md).
  let tokenizer = null;
  const beforeWeights = async (base, manifest) => {
    tokenizer = await (isEmbeddingModel(manifest) ? EmbeddingTokenizer : ChatTokenizer).load(base, manifest);
    await askForGarbageCollection();
  };
  const model = await loadModel(url, { device, threads, wasmBuild, contextWindow, tuning, shareDevice, onProgress, beforeWeights });
  if (isEmbeddingModel(model.manifest)) return new EmbeddingEngine(model, tokenizer, { batchSize, batchTokens }); // no chat
  // after a lost WebGPU device the engine loads the model again the same way (from the file cache
  // when the page uses one, see useFileCache)
  const reload = () => loadModel(url, { device, threads, wasmBuild, contextWindow, tuning, shareDevice, onProgress });
  return new Engine(model, tokenizer, { prefillChunk, contextPolicy: contextPolicy ?? context_policy ?? "error", reload });
}

export class Engine {
  constructor(model, tokenizer, { prefillChunk = 128, contextPolicy = "error", reload = null } = {}) {
    if (!["error", "sliding"].includes(contextPolicy)) {
      throw new EngineStateError(`contextPolicy must be "error" or "sliding", got ${JSON.stringify(contextPolicy)}`);
    }
    this.model = model;
    this.tokenizer = tokenizer;
    this.generator = new Generator(model, { prefillChunk });
    this.reload = reload;
    this.contextPolicy = contextPolicy;
    this.contextWindow = model.contextWindow;
    this.modelName = model.manifest.model.name;
    this.busy = false;
    this.interrupted = false;
    this.chat = { completions: { create: (request) => this.start(parseChatRequest(request), "chat") } };
    this.completions = { create: (request) => this.start(parseCompletionRequest(request), "text") };
    this.embeddings = { create: async () => {
      throw new EngineStateError(`${this.modelName} is a language model: embeddings need an encoder artifact ` +
        "(webrt compile a BertModel or XLMRobertaModel folder)");
    } };
  }

  get info() {
    return { model: this.modelName, device: this.model.device, device_reason: this.model.deviceReason,
             threads: this.model.threads, threads_reason: this.model.threadsReason, wasm_build: this.model.wasmBuild,
             adapter: this.model.adapter, timings: this.model.timings, tuning: this.model.tuning,
             precision: this.model.precision, precision_reason: this.model.precisionReason };
  }

  /** Stop the running generation after the current token; its finish_reason is "abort". */
  interrupt() {
    this.interrupted = true;
  }

  /**
   * After a lost WebGPU device (the request in flight ended with DeviceLostError): load the model
   * again on a new device. The KV cache went with the old device, so the next prompt is prefilled
   * whole. When that fails, every request gets a DeviceLostError that says to reload the page.
   */
  async recover() {
    const { reason } = this.model.lost;
    if (!this.reload) {
      throw new DeviceLostError(`the WebGPU device was lost (${reason}) and this engine was not made by createEngine, ` +
        "so it cannot load the model again: reload the page", reason);
    }
    let model;
    try {
      model = await this.reload();
    } catch (err) {
      throw new DeviceLostError(`the WebGPU device was lost (${reason}) and loading the model again failed ` +
        `(${err.name}: ${err.message}): reload the page`, reason);
    }
    this.model.unload();
    this.model = model;
    this.generator = new Generator(model, { prefillChunk: this.generator.prefillChunk });
  }

  /** Forget the conversation held in the KV cache. */
  resetChat() {
    this.generator.reset();
  }

  unload() {
    this.model?.unload();
    this.model = null;
  }

  start(request, kind) {
    if (!this.model) throw new EngineStateError("the engine was unloaded; create a new one");
    if (request.n > 1) return this.several(request, kind);
    const steps = this.generate(request, kind);
    if (request.stream) return Promise.resolve(steps);
    return (async () => {
      let text = "";
      let last;
      const toolCalls = [];
      const logprobs = [];
      for await (const chunk of steps) {
        text += kind === "chat" ? chunk.choices[0].delta.content ?? "" : chunk.choices[0].text;
        toolCalls.push(...(chunk.choices[0].delta?.tool_calls ?? []));
        if (chunk.choices[0].logprobs) logprobs.push(chunk.choices[0].logprobs);
        last = chunk;
      }
      const result = { id: last.id, model: this.modelName, text, toolCalls, finishReason: last.choices[0].finish_reason, usage: last.usage,
                       logprobs: joinLogprobs(kind, logprobs) };
      return kind === "chat" ? chatCompletion(result) : textCompletion(result);
    })();
  }

  /**
   * n > 1 (not streaming): n replies one after another, the i-th sampled with seed + i, so one seed
   * reproduces all n. After the first, the prompt's KV cache is reused. usage counts all n;
   * usage.extra is the first reply's, with each reply's token ids in choice_token_ids.
   */
  async several(request, kind) {
    const seed = request.sampling.seed ?? Math.floor(Math.random() * 2 ** 31);
    const replies = [];
    for (let i = 0; i < request.n; i++) {
      replies.push(await this.start({ ...request, n: 1, sampling: { ...request.sampling, seed: seed + i } }, kind));
    }
    const completion = replies.reduce((sum, r) => sum + r.usage.completion_tokens, 0);
    const { usage } = replies[0];
    return { ...replies[0], choices: replies.map((r, index) => ({ ...r.choices[0], index })),
             usage: { ...usage, completion_tokens: completion, total_tokens: usage.prompt_tokens + completion,
                      extra: { ...usage.extra, choice_token_ids: replies.map((r) => r.usage.extra.token_ids) } } };
  }

  /** Prompt tokens for the request, dropping the oldest turns under the sliding policy. */
  promptTokens(request, kind) {
    const maxTokens = request.maxTokens ?? 1;
    const encode = (messages) => {
      const shaped = toolPrompt(messages, request.tools, this.tokenizer.templateSource);
      return this.tokenizer.encode(this.tokenizer.applyChatTemplate(shaped.messages, shaped.variables));
    };
    if (kind === "text") {
      const tokens = this.tokenizer.encodePrompt(request.prompt);
      this.checkFits(tokens.length, maxTokens);
      return tokens;
    }
    let messages = request.messages;
    let tokens = encode(messages);
    while (tokens.length + maxTokens > this.contextWindow && this.contextPolicy === "sliding") {
      const first = messages.findIndex((m) => m.role !== "system");
      if (first < 0 || first === messages.length - 1) break; // only the newest message is left
      messages = messages.filter((_, i) => i !== first);
      tokens = encode(messages);
    }
    this.checkFits(tokens.length, maxTokens);
    return tokens;
  }

  checkFits(promptTokens, maxTokens) {
    if (promptTokens + maxTokens > this.contextWindow) {
      const most = this.model.manifest.model.config.context_window;
      const larger = this.contextWindow < most ? `a larger contextWindow (up to ${most}) or ` : "";
      throw new ContextWindowError(`prompt tokens (${promptTokens}) + max_tokens (${maxTokens}) exceed the context ` +
        `window of ${this.contextWindow}; shorten the prompt, lower max_tokens, or create the engine with ` +
        `${larger}contextPolicy: "sliding" to drop the oldest turns`);
    }
  }

  /** The grammar a request's response_format or tools ask for (grammar.js); the compiler loads on first use. */
  async constraintFor(request) {
    const spec = request.responseFormat ?? toolGrammar(request.tools, this.tokenizer.templateSource);
    if (!spec) return null;
    this.grammars ??= GrammarCompiler.load(this.model.base, this.model.manifest, this.tokenizer.stopIds)
      .catch((err) => { this.grammars = null; throw err; });
    return (await this.grammars).constraint(spec);
  }

  async *generate(request, kind) {
    if (this.busy) throw new EngineStateError("a request is already running; await it or call interrupt()");
    this.busy = true;
    this.interrupted = false;
    let constraint = null;
    try {
      if (this.model.lost) await this.recover();
      const id = newId(kind === "chat" ? "chatcmpl" : "cmpl");
      const prompt = this.promptTokens(request, kind);
      const maxTokens = request.maxTokens ?? this.contextWindow - prompt.length;
      constraint = await this.constraintFor(request);
      const sampler = new Sampler(request.sampling, prompt, constraint, this.model.manifest.model.config.vocab_size);
      const text = new TextStream(this.tokenizer, request.stop);
      // logprobs: the entries of tokens generated since the last chunk ride on the next one
      let pending = [];
      let textOffset = 0;
      const take = () => {
        const taken = pending.length ? pending : undefined;
        pending = [];
        return taken;
      };
      const chunk = (delta, finishReason = null, usage, toolCalls) => {
        const logprobs = take();
        if (kind === "chat") {
          return chatChunk({ id, model: this.modelName, delta: toolCalls ? { tool_calls: toolCalls } : delta === null ? {} : { content: delta }, finishReason, usage, logprobs });
        }
        const made = textChunk({ id, model: this.modelName, text: delta ?? "", finishReason, usage, logprobs, logprobsOffset: textOffset });
        textOffset += logprobs?.reduce((n, e) => n + e.token.length, 0) ?? 0;
        return made;
      };
      // with tools, text deltas are split into content and tool calls, read in the template's format (tools.js)
      const calls = kind === "chat" && request.tools && request.tools.choice !== "none"
        ? callFormat(this.tokenizer.templateSource).reader() : null;
      const pieces = function* (delta, last = false) {
        const { content, calls: made } = !calls ? { content: delta, calls: [] } : calls.push(delta);
        const end = last && calls ? calls.flush() : { content: "", calls: [] };
        if (content + end.content) yield chunk(content + end.content);
        if (made.length + end.calls.length) yield chunk(null, null, undefined, [...made, ...end.calls]);
      };

      const t0 = performance.now();
      if (kind === "chat") yield chatChunk({ id, model: this.modelName, delta: { role: "assistant", content: "" } });
      let { token, reused } = await this.generator.prefill(prompt, sampler);
      const tFirst = performance.now();
      let generated = 0;
      const tokenIds = [];
      let finishReason = "length";
      while (true) {
        if (this.tokenizer.stopIds.has(token)) {
          finishReason = "stop";
          break;
        }
        generated += 1;
        tokenIds.push(token);
        sampler.accept(token);
        if (sampler.last) pending.push(tokenLogprob((ids) => this.tokenizer.decode(ids), sampler.last));
        yield* pieces(text.push(token));
        if (text.stopped) {
          finishReason = "stop";
          break;
        }
        if (this.interrupted || request.signal?.aborted) {
          finishReason = "abort";
          break;
        }
        if (generated >= maxTokens || this.generator.cached.length >= this.contextWindow) break;
        token = await this.generator.decode(token, sampler);
      }
      yield* pieces(text.flush(), true);
      if (calls?.calls.length && finishReason === "stop") finishReason = "tool_calls";
      const tEnd = performance.now();
      const usage = {
        prompt_tokens: prompt.length, completion_tokens: generated, total_tokens: prompt.length + generated,
        extra: {
          prefix_reused_tokens: reused,
          time_to_first_token_ms: tFirst - t0,
          prefill_tokens_per_s: (prompt.length - reused) / ((tFirst - t0) / 1000),
          decode_tokens_per_s: generated > 1 ? (generated - 1) / ((tEnd - tFirst) / 1000) : null,
          total_ms: tEnd - t0,
          token_ids: tokenIds,
          gpu_bytes: this.model.gpuBytes,
          device: this.model.device,
          threads: this.model.threads,  // wasm: threads in use; threads_reason in engine.info says why
          grammar: constraint && {  // time in xgrammar per generated token (mask filling and acceptance)
            ...constraint.stats, ms_per_token: (constraint.stats.mask_ms + constraint.stats.accept_ms) / Math.max(1, generated) },
        },
      };
      yield chunk(null, finishReason, usage);
      // OpenAI's stream_options.include_usage: one more chunk, with no choices, holding the usage
      if (request.includeUsage) yield { ...chunk(null, null, usage), choices: [] };
    } finally {
      constraint?.dispose();
      this.busy = false;
    }
  }
}
