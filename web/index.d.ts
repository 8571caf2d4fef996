// Types for webrt's JS shell (index.js). Hand-written: keep them next to the sources they describe
// (engine.js, openai_protocol.js, grammar.js, tools.js, embeddings.js, worker_engine.js, model.js,
// tuner.js, loader.js). Requests and responses follow OpenAI's chat/completions/embeddings shapes;
// webrt's own additions are under usage.extra and engine.info.

export * from "./errors.js";

// ---- loading ---------------------------------------------------------------------------------

/** "auto": WebGPU on a hardware adapter with the kernels' limits, else the wasm kernels. */
export type Device = "webgpu" | "wasm" | "auto";

/** Schedule tuning: false (compile-time defaults), "auto" (stored winners, times nothing), true or options (time candidates). */
export type TuningOption = false | "off" | "auto" | true | "on" | {
  budget_s?: number;
  budgetS?: number;
  /** entries to walk, e.g. ["decode", "prefill:64"] */
  entries?: string[];
  /** time again even when winners are stored */
  force?: boolean;
};

export interface LoadProgress {
  stage: "download" | "pipelines" | "tuning" | "ready";
  loaded?: number;
  total?: number | null;
  /** download: whether the bytes came from the file cache (useFileCache) */
  cached?: boolean;
  /** tuning: the function and entry being timed */
  func?: string;
  entry?: string;
}

export type WasmBuild = "simd" | "threads" | "scalar" | "relaxed" | "relaxed_threads";

export interface LoadModelOptions {
  device?: Device;
  /** wasm: threads that run the kernels (default: one per core when crossOriginIsolated, else 1) */
  threads?: number;
  /** wasm: force one of the builds, for diagnostics */
  wasmBuild?: WasmBuild;
  tuning?: TuningOption;
  /**
   * WebGPU: use the page's (or worker's) one shared device, with other models loaded so, rather than
   * a device of its own. Each model keeps its own buffers and gpuBytes; unload frees them, and the
   * last one frees the device. wasm models always keep their own memory and thread pool.
   */
  shareDevice?: boolean;
  /** WebGPU: "auto" (a q4f16 artifact's f16 kernel set where the adapter has shader-f16) or "f32" */
  precision?: "auto" | "f32";
  /**
   * Positions the KV cache holds: an integer up to the artifact's config.context_window (default
   * 1024, or the artifact's when smaller). Full-attention layers' caches and the RoPE tables get
   * rows for that many only; sliding-window layers keep their ring.
   */
  contextWindow?: number;
  onProgress?: (progress: LoadProgress) => void;
}

export interface AdapterInfo {
  vendor?: string;
  architecture?: string;
  description?: string;
  /** a software renderer such as SwiftShader */
  software: boolean;
  /** the adapter has `shader-f16` (the device is created with it): lavapipe in Deno, not SwiftShader */
  shaderF16: boolean;
}

export interface LoadTimings {
  load_ms: number;
  pipelines_ms: number;
  tuning_ms: number;
  last_run_ms?: number;
}

/** A stored tuning record: the winning schedule per function, for one device key and candidate space. */
export interface TuningRecord {
  device: string;
  space: string;
  backend: "webgpu" | "wasm";
  winners: Record<string, string>;
  functions?: Record<string, unknown>;
  seconds?: number;
  created?: string;
}

/** What a load used for schedules: "default" (none stored), "indexeddb", "artifact" or "tuned". */
export interface TuningInfo {
  source: "default" | "indexeddb" | "artifact" | "tuned";
  device_key: string;
  winners: Record<string, string>;
  candidates_timed: number;
  seconds: number;
  functions?: Record<string, unknown>;
  record?: TuningRecord;
}

/** An input tensor of a plan entry: flat data and a shape, or the values of a scalar input. */
export type TensorInput =
  | { data: Int32Array | Uint32Array | Float32Array; shape: number[] }
  | { values: number[] };

export interface TensorOutput {
  data: Float32Array | Int32Array | Uint32Array;
  shape: number[];
}

/** The artifact's manifest.json (docs/ARTIFACT.md); only the fields the types rely on are spelled out. */
export interface Manifest {
  format: "webrt-artifact";
  format_version: number;
  model: {
    name: string;
    task?: "generate" | "embedding" | string;
    config: { vocab_size: number; context_window: number; hidden_size?: number; [key: string]: unknown };
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

export declare class Model {
  readonly base: URL;
  readonly manifest: Manifest;
  readonly device: "webgpu" | "wasm";
  readonly deviceReason: string;
  readonly adapter: AdapterInfo | null;
  /** WebGPU: on the page's shared device (loadModel's shareDevice) */
  readonly sharedDevice: boolean;
  /** wasm only */
  readonly threads: number | null;
  readonly threadsReason: string | null;
  /** positions the KV cache holds (loadModel's contextWindow), at most manifest.model.config.context_window */
  readonly contextWindow: number;
  /** wasm only: the build that runs (relaxed builds where the browser has relaxed SIMD) */
  readonly wasmBuild: WasmBuild | null;
  /** "f16": a q4f16 artifact's f16 kernel set (the adapter has shader-f16); else "f32" */
  readonly precision: "f16" | "f32";
  readonly precisionReason: string;
  readonly tuning: TuningInfo | null;
  readonly timings: LoadTimings;
  /** WebGPU: the GPUDeviceLostInfo once the device is lost, else null */
  readonly lost: { reason: string; message?: string } | null;
  /** device memory in use: live GPU buffers, or wasm memory */
  readonly gpuBytes: number;
  /** Run any entry of the plan; one item per output. */
  run(entry: string, inputs: Record<string, TensorInput>, options?: Record<string, unknown>): Promise<TensorOutput[]>;
  /** Logits for token ids at positions 0..n-1: one array of vocab_size floats per position. */
  forward(tokens: readonly number[]): Promise<{ logits: Float32Array[]; forward_ms: number }>;
  unload(): void;
}

export function loadModel(url: string | URL, options?: LoadModelOptions): Promise<Model>;

/** The artifact format version this shell reads. */
export const FORMAT_VERSION: number;

/** Keep artifact files in the Cache API under `name` (null: off); reloads download nothing again. */
export function useFileCache(name: string | null): void;

// ---- tuning DB -------------------------------------------------------------------------------

export interface TuningDB {
  format: "webrt-tuning";
  version: number;
  records: TuningRecord[];
}

/** Every record in this browser's tuning store (IndexedDB), JSON-serializable. */
export function exportTuningDB(): Promise<TuningDB>;
/** Add a tuning DB's records to this browser's store; resolves to how many. DeviceError when it is not a tuning DB. */
export function importTuningDB(db: TuningDB): Promise<number>;

// ---- chat and completion requests ------------------------------------------------------------

export interface ToolCall {
  id: string;
  type: "function";
  function: {
    name: string;
    /** the arguments as a JSON string */
    arguments: string;
  };
}

/** A tool call in a stream chunk: `index` counts the reply's calls. Each arrives whole. */
export interface ToolCallDelta extends ToolCall {
  index: number;
}

export interface SystemMessage {
  role: "system";
  content: string;
  name?: string;
}

export interface UserMessage {
  role: "user";
  content: string;
  name?: string;
}

export type AssistantMessage =
  | { role: "assistant"; content: string; tool_calls?: ToolCall[]; name?: string }
  | { role: "assistant"; content: null; tool_calls: ToolCall[]; name?: string };

export interface ToolMessage {
  role: "tool";
  content: string;
  tool_call_id?: string;
  name?: string;
}

export type ChatMessage = SystemMessage | UserMessage | AssistantMessage | ToolMessage;

/** A JSON Schema, as response_format and tool parameters take it. */
export type JSONSchema = { [key: string]: unknown } | boolean;

export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; json_schema: { name?: string; description?: string; schema: JSONSchema; strict?: boolean } }
  /** xgrammar's EBNF with a root rule (root ::= ...) */
  | { type: "grammar"; grammar: string };

export interface FunctionTool {
  type: "function";
  function: {
    /** 1-64 letters, digits, _ or - */
    name: string;
    description?: string;
    parameters?: { [key: string]: unknown };
  };
}

export type ToolChoice = "auto" | "none" | "required" | { type: "function"; function: { name: string } };

/** Fields common to chat and text completions. Unknown fields are ignored. */
export interface SamplingRequest {
  max_tokens?: number | null;
  stop?: string | string[] | null;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  seed?: number;
  repetition_penalty?: number;
  frequency_penalty?: number;
  presence_penalty?: number;
  /** token id -> bias in [-100, 100], added to the logits on the device; -100 keeps the token out (the token mask) */
  logit_bias?: { [tokenId: string]: number } | null;
  /** aborting it ends the reply with finish_reason "abort", like interrupt() */
  signal?: AbortSignal | null;
  /** streams: include_usage adds a last chunk with no choices and the usage (the finishing chunk has it too) */
  stream_options?: { include_usage?: boolean } | null;
  response_format?: ResponseFormat;
}

export interface ChatCompletionRequestBase extends SamplingRequest {
  messages: ChatMessage[];
  /** each generated token's log-probability (log_softmax of the processed logits at temperature 1), computed on the device */
  logprobs?: boolean | null;
  /** 0-20 most likely alternatives per token; needs logprobs: true */
  top_logprobs?: number | null;
  tools?: FunctionTool[];
  tool_choice?: ToolChoice;
}

export interface ChatCompletionRequestStreaming extends ChatCompletionRequestBase {
  stream: true;
  n?: 1 | null;
}

export interface ChatCompletionRequestNonStreaming extends ChatCompletionRequestBase {
  stream?: false | null;
  /** replies to sample (1-16), the i-th with seed + i */
  n?: number | null;
}

export type ChatCompletionRequest = ChatCompletionRequestStreaming | ChatCompletionRequestNonStreaming;

export interface CompletionRequestBase extends SamplingRequest {
  prompt: string;
  /** OpenAI's legacy field: log-probabilities with this many alternatives per token (0-20) */
  logprobs?: number | null;
}

export interface CompletionRequestStreaming extends CompletionRequestBase {
  stream: true;
  n?: 1 | null;
}

export interface CompletionRequestNonStreaming extends CompletionRequestBase {
  stream?: false | null;
  /** replies to sample (1-16), the i-th with seed + i */
  n?: number | null;
}

export type CompletionRequest = CompletionRequestStreaming | CompletionRequestNonStreaming;

// ---- responses -------------------------------------------------------------------------------

/** "abort": interrupt() ended it; "tool_calls": the reply holds tool calls. */
export type FinishReason = "stop" | "length" | "abort" | "tool_calls";

/** Time in xgrammar during a constrained reply. */
export interface GrammarStats {
  mask_ms: number;
  accept_ms: number;
  steps: number;
  ms_per_token: number;
}

/** webrt's timings and counters for one reply. */
export interface UsageExtra {
  /** prompt tokens whose KV entries were kept from the previous turn */
  prefix_reused_tokens: number;
  time_to_first_token_ms: number;
  prefill_tokens_per_s: number;
  /** null when at most one token was generated */
  decode_tokens_per_s: number | null;
  total_ms: number;
  token_ids: number[];
  gpu_bytes: number;
  device: "webgpu" | "wasm";
  threads: number | null;
  /** null without response_format or tools */
  grammar: GrammarStats | null;
  /** n > 1: each reply's token ids (the rest of extra is the first reply's) */
  choice_token_ids?: number[][];
}

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  extra: UsageExtra;
}

export interface ChatCompletionMessage {
  role: "assistant";
  /** null when the reply is only tool calls */
  content: string | null;
  tool_calls?: ToolCall[];
}

/** One generated token: its text, log-probability and UTF-8 bytes. */
export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

/** logprobs of a chat choice or chunk: one entry per generated token (in a chunk: those since the last chunk). */
export interface ChatCompletionLogprobs {
  content: (TokenLogprob & { top_logprobs: TokenLogprob[] })[];
}

/** logprobs of a completion choice or chunk (OpenAI's legacy shape); text_offset counts from the reply's start. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: { [token: string]: number }[];
  text_offset: number[];
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: { index: number; message: ChatCompletionMessage; logprobs?: ChatCompletionLogprobs; finish_reason: FinishReason }[];
  usage: CompletionUsage;
}

export interface ChatCompletionDelta {
  role?: "assistant";
  content?: string;
  tool_calls?: ToolCallDelta[];
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  /** empty in the usage chunk of stream_options.include_usage */
  choices: { index: number; delta: ChatCompletionDelta; logprobs?: ChatCompletionLogprobs; finish_reason: FinishReason | null }[];
  /** on the finishing chunk (and the include_usage chunk) only */
  usage?: CompletionUsage;
}

export interface Completion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: { index: number; text: string; logprobs?: CompletionLogprobs; finish_reason: FinishReason }[];
  usage: CompletionUsage;
}

export interface CompletionChunk {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: { index: number; text: string; logprobs?: CompletionLogprobs; finish_reason: FinishReason | null }[];
  /** on the last chunk only */
  usage?: CompletionUsage;
}

// ---- embeddings ------------------------------------------------------------------------------

export interface EmbeddingRequest {
  /** at most 2048 non-empty strings */
  input: string | string[];
  /** 1..hidden size: the first `dimensions` values, normalized again for unit-vector models */
  dimensions?: number | null;
  encoding_format?: "float";
  model?: string;
}

export interface EmbeddingResponse {
  object: "list";
  model: string;
  data: { object: "embedding"; index: number; embedding: number[] }[];
  usage: {
    prompt_tokens: number;
    total_tokens: number;
    extra: { total_ms: number; sentences_per_s: number; batches: number; device: "webgpu" | "wasm"; threads: number | null };
  };
}

// ---- engines ---------------------------------------------------------------------------------

export interface EngineOptions extends LoadModelOptions {
  /** createEngine's default is "auto" (loadModel's is "webgpu"); engine.info.device_reason says why it chose */
  device?: Device;
  /** tokens per prefill step (128) */
  prefillChunk?: number;
  /** "error" (default): ContextWindowError when prompt + max_tokens do not fit; "sliding": drop the oldest turns */
  contextPolicy?: "error" | "sliding";
  context_policy?: "error" | "sliding";
  /** embedding models: the most sentences and padded tokens per kernel run (32, 512) */
  batchSize?: number;
  batchTokens?: number;
}

export interface EngineInfo {
  model: string;
  device: "webgpu" | "wasm";
  device_reason: string;
  threads: number | null;
  threads_reason: string | null;
  wasm_build: WasmBuild | null;
  adapter: AdapterInfo | null;
  timings: LoadTimings;
  tuning: TuningInfo | null;
  /** language models: "f16" or "f32" kernels, and why (Model.precision) */
  precision?: "f16" | "f32";
  precision_reason?: string;
  /** embedding models only */
  task?: "embedding";
  dimensions?: number;
  max_seq_length?: number;
}

export interface ChatCompletions {
  create(request: ChatCompletionRequestStreaming): Promise<AsyncGenerator<ChatCompletionChunk, void, undefined>>;
  create(request: ChatCompletionRequestNonStreaming): Promise<ChatCompletion>;
  create(request: ChatCompletionRequest): Promise<AsyncGenerator<ChatCompletionChunk, void, undefined> | ChatCompletion>;
}

export interface Completions {
  create(request: CompletionRequestStreaming): Promise<AsyncGenerator<CompletionChunk, void, undefined>>;
  create(request: CompletionRequestNonStreaming): Promise<Completion>;
  create(request: CompletionRequest): Promise<AsyncGenerator<CompletionChunk, void, undefined> | Completion>;
}

/** What createEngine and createWorkerEngine give: the same calls on the page and in a Worker. */
export interface WebrtEngine {
  readonly info: EngineInfo;
  /** language models; an embedding model's engine rejects these with EngineStateError */
  readonly chat: { readonly completions: ChatCompletions };
  readonly completions: Completions;
  /** embedding models; a language model's engine rejects this with EngineStateError */
  readonly embeddings: { create(request: EmbeddingRequest): Promise<EmbeddingResponse> };
  /** Stop the running generation after the current token; its finish_reason is "abort". */
  interrupt(): void | Promise<void>;
  /** Forget the conversation held in the KV cache. */
  resetChat(): void | Promise<void>;
  unload(): void | Promise<void>;
}

/** The engine of a language model, on the page. */
export declare class Engine implements WebrtEngine {
  constructor(model: Model, tokenizer: ChatTokenizer, options?: { prefillChunk?: number; contextPolicy?: "error" | "sliding"; reload?: (() => Promise<Model>) | null });
  readonly model: Model | null;
  readonly info: EngineInfo;
  readonly chat: { readonly completions: ChatCompletions };
  readonly completions: Completions;
  readonly embeddings: { create(request: EmbeddingRequest): Promise<EmbeddingResponse> };
  readonly contextWindow: number;
  readonly modelName: string;
  interrupt(): void;
  resetChat(): void;
  unload(): void;
}

/** The engine of an embedding model (manifest model.task "embedding"), on the page. */
export declare class EmbeddingEngine implements WebrtEngine {
  static create(model: Model, options?: { batchSize?: number; batchTokens?: number }): Promise<EmbeddingEngine>;
  readonly model: Model | null;
  readonly info: EngineInfo;
  readonly chat: { readonly completions: ChatCompletions };
  readonly completions: Completions;
  readonly embeddings: { create(request: EmbeddingRequest): Promise<EmbeddingResponse> };
  interrupt(): void;
  resetChat(): void;
  unload(): void;
}

/** Load an artifact and give its engine: an Engine for a language model, an EmbeddingEngine for an encoder. */
export function createEngine(url: string | URL, options?: EngineOptions): Promise<Engine | EmbeddingEngine>;

export interface WorkerEngineOptions extends Omit<EngineOptions, "onProgress"> {
  /** called on the page with the worker's load progress */
  onProgress?: (progress: LoadProgress) => void;
  /** a Cache API name for the artifact's files inside the worker (useFileCache) */
  cache?: string | null;
}

/** The engine inside a Web Worker running webrt/worker; the same API as createEngine. Calls return promises. */
export interface WorkerEngine extends WebrtEngine {
  interrupt(): Promise<void>;
  resetChat(): Promise<void>;
  /** unloads the model and terminates the worker */
  unload(): Promise<void>;
}

/**
 *   const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" }); // imports "webrt/worker"
 *   const engine = await createWorkerEngine(worker, "./model/");
 */
export function createWorkerEngine(worker: Worker, url: string | URL, options?: WorkerEngineOptions): Promise<WorkerEngine>;

// ---- lower-level parts (exported for tools and tests) ----------------------------------------

export declare class ChatTokenizer {
  static load(base: URL | string, manifest: Manifest): Promise<ChatTokenizer>;
  readonly stopIds: Set<number>;
  encode(text: string): number[];
  /** a completion prompt: with the model's beginning-of-text token where it has one */
  encodePrompt(text: string): number[];
  decode(ids: readonly number[]): string;
  applyChatTemplate(messages: ChatMessage[], variables?: Record<string, unknown>): string;
}

export declare class EmbeddingTokenizer {
  static load(base: URL | string, manifest: Manifest): Promise<EmbeddingTokenizer>;
  encode(text: string, maxLength?: number): number[];
}

export declare class Embeddings {
  constructor(model: Model, tokenizer: EmbeddingTokenizer, options?: { batchSize?: number; batchTokens?: number });
  create(request: EmbeddingRequest): Promise<EmbeddingResponse>;
}

/** Sampling settings and state for one generation (temperature, top_p, top_k, seed, penalties). */
export declare class Sampler {
  constructor(options?: Partial<Pick<SamplingRequest, "temperature" | "top_p" | "top_k" | "seed" | "repetition_penalty" | "frequency_penalty" | "presence_penalty">>,
    promptTokens?: readonly number[], constraint?: GrammarConstraint | null);
  accept(token: number): void;
}

/** The KV cache bookkeeping: prefill (reusing the longest cached prefix) and decode steps. */
export declare class Generator {
  constructor(model: Model, options?: { prefillChunk?: number });
  readonly cached: number[];
  reset(): void;
  prefill(tokens: readonly number[], sampler: Sampler): Promise<{ token: number; reused: number }>;
  decode(token: number, sampler: Sampler): Promise<number>;
}

/** A token bitmask that allows every token of a vocabulary. */
export function allowAllMask(vocab: number): Int32Array;

/** An entry's inputs for `ids` at cache position `offset`, greedy, with no mask, penalties, bias or logprobs. */
export function greedyInputs(vocab: number, ids: readonly number[], offset: number): Record<string, TensorInput>;

/** A grammar spec, as parseResponseFormat and the tools produce it. */
export type GrammarSpec =
  | { kind: "json_schema"; schema: JSONSchema; strict?: boolean; field: string }
  | { kind: "ebnf"; grammar: string; field: string }
  | { kind: "structural_tag"; tag: Record<string, unknown>; field: string };

/** A grammar's state during one reply (grammar.js; not exported at run time). */
export interface GrammarConstraint {
  readonly stats: { mask_ms: number; accept_ms: number; steps: number };
  mask(): Promise<Int32Array>;
  accept(token: number): void;
  readonly terminated: boolean;
  dispose(): void;
}

/** xgrammar compiled against the model's vocabulary (loaded on the first structured request). */
export declare class GrammarCompiler {
  static load(base: URL | string, manifest: Manifest, stopIds: Iterable<number>): Promise<GrammarCompiler>;
  constraint(spec: GrammarSpec): Promise<GrammarConstraint>;
}

/** The longest whitespace run allowed inside JSON strings and free text under a grammar. */
export const WHITESPACE_RUN_CAP: number;
