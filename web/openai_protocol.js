// OpenAI-shaped requests and responses: validation at the boundary, and the response objects.

import { InputError } from "./errors.js";
import { parseResponseFormat } from "./grammar.js";
import { parseTools } from "./tools.js";

const ROLES = new Set(["system", "user", "assistant", "tool"]);
const SAMPLING_KEYS = ["temperature", "top_p", "top_k", "seed", "repetition_penalty", "frequency_penalty", "presence_penalty"];

const given = (value) => value !== undefined && value !== null;
export const MAX_N = 16;
export const MAX_TOP_LOGPROBS = 20; // the device returns this many alternatives (webrt/models/sampling.py)

/**
 * Chat: logprobs true|false and top_logprobs 0-20 (OpenAI's); completions: logprobs 0-20, the
 * number of alternatives (OpenAI's legacy field). Returns the alternatives' count, or undefined when off.
 */
function parseLogprobs(request, kind) {
  const range = (name, value) => {
    if (!(Number.isInteger(value) && value >= 0 && value <= MAX_TOP_LOGPROBS)) {
      throw new InputError(`${name} must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${JSON.stringify(value)}`);
    }
    return value;
  };
  if (kind === "text") return given(request.logprobs) ? range("logprobs", request.logprobs) : undefined;
  if (given(request.logprobs) && typeof request.logprobs !== "boolean") {
    throw new InputError(`logprobs must be true or false, got ${JSON.stringify(request.logprobs)}`);
  }
  if (given(request.top_logprobs) && !request.logprobs) throw new InputError("top_logprobs needs logprobs: true");
  return request.logprobs ? range("top_logprobs", request.top_logprobs ?? 0) : undefined;
}

/** logit_bias {token id: bias in [-100, 100]} as [[id, bias]]; -100 keeps a token out. */
function parseLogitBias(bias) {
  if (!given(bias)) return [];
  if (typeof bias !== "object" || Array.isArray(bias)) {
    throw new InputError(`logit_bias must be an object of token id -> bias, got ${JSON.stringify(bias)}`);
  }
  return Object.entries(bias).map(([key, value]) => {
    if (!/^\d+$/.test(key)) throw new InputError(`logit_bias keys must be token ids (integers >= 0), got ${JSON.stringify(key)}`);
    if (!(typeof value === "number" && value >= -100 && value <= 100)) {
      throw new InputError(`logit_bias[${key}] must be a number in [-100, 100], got ${JSON.stringify(value)}`);
    }
    return [Number(key), value];
  });
}

// Unknown fields are ignored, as OpenAI ignores them; a known field of the wrong type is an InputError.
function checkCommon(request, kind) {
  if (given(request.max_tokens) && !(Number.isInteger(request.max_tokens) && request.max_tokens > 0)) {
    throw new InputError(`max_tokens must be a positive integer, got ${JSON.stringify(request.max_tokens)}`);
  }
  for (const key of SAMPLING_KEYS) {
    if (given(request[key]) && !(typeof request[key] === "number" && Number.isFinite(request[key]))) {
      throw new InputError(`${key} must be a number, got ${JSON.stringify(request[key])}`);
    }
  }
  if (given(request.seed) && !Number.isInteger(request.seed)) throw new InputError(`seed must be an integer, got ${request.seed}`);
  if (given(request.stream) && typeof request.stream !== "boolean") {
    throw new InputError(`stream must be true or false, got ${JSON.stringify(request.stream)}`);
  }
  const n = request.n ?? 1;
  if (!(Number.isInteger(n) && n >= 1 && n <= MAX_N)) throw new InputError(`n must be an integer in [1, ${MAX_N}], got ${JSON.stringify(request.n)}`);
  if (n > 1 && request.stream) throw new InputError("n > 1 works only without stream; stream one reply at a time");
  const options = request.stream_options ?? null;
  if (options !== null && (typeof options !== "object" || ![undefined, true, false].includes(options.include_usage))) {
    throw new InputError(`stream_options must be {include_usage: true | false}, got ${JSON.stringify(options)}`);
  }
  const signal = request.signal ?? null;
  if (signal !== null && !(typeof signal.aborted === "boolean" && typeof signal.addEventListener === "function")) {
    throw new InputError("signal must be an AbortSignal (new AbortController().signal)");
  }
  const stop = request.stop === undefined || request.stop === null ? [] : [request.stop].flat();
  if (!stop.every((s) => typeof s === "string" && s.length > 0)) {
    throw new InputError("stop must be a non-empty string or a list of them");
  }
  const sampling = Object.fromEntries(SAMPLING_KEYS.filter((k) => request[k] !== undefined).map((k) => [k, request[k]]));
  sampling.logit_bias = parseLogitBias(request.logit_bias);
  sampling.logprobs = parseLogprobs(request, kind);
  return { maxTokens: request.max_tokens ?? null, stop, sampling, stream: Boolean(request.stream), n, signal,
           includeUsage: Boolean(request.stream && options?.include_usage),
           responseFormat: parseResponseFormat(request.response_format) };
}

export function parseChatRequest(request) {
  if (!request || !Array.isArray(request.messages) || request.messages.length === 0) {
    throw new InputError("messages must be a non-empty list of {role, content}");
  }
  for (const [i, m] of request.messages.entries()) {
    const callsOnly = m?.role === "assistant" && Array.isArray(m.tool_calls) && m.tool_calls.length > 0 && (m.content ?? null) === null;
    if (!ROLES.has(m?.role) || (typeof m.content !== "string" && !callsOnly)) {
      throw new InputError(`messages[${i}] must be {role: "system"|"user"|"assistant"|"tool", content: string}` +
        " (an assistant's may have content null with tool_calls)");
    }
    for (const [j, c] of (m.tool_calls ?? []).entries()) {
      if (typeof c?.function?.name !== "string" || typeof c.function.arguments !== "string") {
        throw new InputError(`messages[${i}].tool_calls[${j}] must be {id, type: "function", function: {name, arguments: a JSON string}}`);
      }
    }
  }
  if (request.messages.at(-1).role === "assistant") throw new InputError("the last message must not be the assistant's");
  const tools = parseTools(request.tools, request.tool_choice);
  if (tools && request.response_format && request.response_format.type !== "text") {
    throw new InputError("give either tools or response_format, not both");
  }
  const messages = request.messages.map(({ role, content, tool_calls, tool_call_id, name }) => ({
    role, content, ...(tool_calls ? { tool_calls } : {}), ...(tool_call_id ? { tool_call_id } : {}), ...(name ? { name } : {}) }));
  return { ...checkCommon(request, "chat"), messages, tools };
}

export function parseCompletionRequest(request) {
  if (typeof request?.prompt !== "string" || request.prompt.length === 0) {
    throw new InputError("prompt must be a non-empty string");
  }
  return { ...checkCommon(request, "text"), prompt: request.prompt };
}

/**
 * One generated token's OpenAI logprobs entry from the sampler's record {token, logprob, top}
 * (sampler.js). Token texts are their decoded text; bytes its UTF-8 bytes.
 */
export function tokenLogprob(decode, { token, logprob, top }) {
  const entry = (id, lp) => {
    const text = decode([id]);
    return { token: text, logprob: lp, bytes: Array.from(new TextEncoder().encode(text)) };
  };
  return { ...entry(token, logprob), top_logprobs: top.map(([id, lp]) => entry(id, lp)) };
}

/** The completions API's (legacy) logprobs shape for entries of tokenLogprob; offsets count from `offset`. */
export function textLogprobs(entries, offset = 0) {
  const text_offset = [];
  for (const e of entries) {
    text_offset.push(offset);
    offset += e.token.length;
  }
  return { tokens: entries.map((e) => e.token), token_logprobs: entries.map((e) => e.logprob),
           top_logprobs: entries.map((e) => Object.fromEntries(e.top_logprobs.map((t) => [t.token, t.logprob]))), text_offset };
}

/** A whole reply's logprobs from its chunks' (a chat's content entries, or one completions-shaped object). */
export function joinLogprobs(kind, pieces) {
  if (!pieces.length) return undefined;
  if (kind === "chat") return pieces.flatMap((p) => p.content);
  const keys = ["tokens", "token_logprobs", "top_logprobs", "text_offset"];
  return Object.fromEntries(keys.map((k) => [k, pieces.flatMap((p) => p[k])]));
}

let counter = 0;
export const newId = (prefix) => `${prefix}-${Date.now().toString(36)}${(counter++).toString(36)}`;

export function chatCompletion({ id, model, text, toolCalls = [], finishReason, usage, logprobs }) {
  const message = toolCalls.length
    ? { role: "assistant", content: text.trim() || null, tool_calls: toolCalls.map(({ index, ...call }) => call) }
    : { role: "assistant", content: text };
  return {
    id, object: "chat.completion", created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, message, ...(logprobs ? { logprobs: { content: logprobs } } : {}), finish_reason: finishReason }],
    usage,
  };
}

export function chatChunk({ id, model, delta, finishReason = null, usage, logprobs }) {
  return {
    id, object: "chat.completion.chunk", created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, delta, ...(logprobs ? { logprobs: { content: logprobs } } : {}), finish_reason: finishReason }],
    ...(usage ? { usage } : {}),
  };
}

export function textCompletion({ id, model, text, finishReason, usage, logprobs }) {
  return {
    id, object: "text_completion", created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, text, ...(logprobs ? { logprobs } : {}), finish_reason: finishReason }], usage,
  };
}

export function textChunk({ id, model, text, finishReason = null, usage, logprobs, logprobsOffset = 0 }) {
  return {
    id, object: "text_completion", created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, text, ...(logprobs ? { logprobs: textLogprobs(logprobs, logprobsOffset) } : {}), finish_reason: finishReason }],
    ...(usage ? { usage } : {}),
  };
}
