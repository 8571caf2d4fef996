// OpenAI-shaped requests and responses: validation at the boundary, and the response objects.

import { InputError } from "./errors.js";
import { parseResponseFormat } from "./grammar.js";
import { parseTools } from "./tools.js";

const ROLES = new Set(["system", "user", "assistant", "tool"]);
const SAMPLING_KEYS = ["temperature", "top_p", "top_k", "seed", "repetition_penalty", "frequency_penalty", "presence_penalty"];

function checkCommon(request) {
  if (request.max_tokens !== undefined && request.max_tokens !== null &&
      !(Number.isInteger(request.max_tokens) && request.max_tokens > 0)) {
    throw new InputError(`max_tokens must be a positive integer, got ${JSON.stringify(request.max_tokens)}`);
  }
  if (request.n !== undefined && request.n !== 1) throw new InputError("only n = 1 is supported");
  const stop = request.stop === undefined || request.stop === null ? [] : [request.stop].flat();
  if (!stop.every((s) => typeof s === "string" && s.length > 0)) {
    throw new InputError("stop must be a non-empty string or a list of them");
  }
  const sampling = Object.fromEntries(SAMPLING_KEYS.filter((k) => request[k] !== undefined).map((k) => [k, request[k]]));
  return { maxTokens: request.max_tokens ?? null, stop, sampling, stream: Boolean(request.stream),
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
  return { ...checkCommon(request), messages, tools };
}

export function parseCompletionRequest(request) {
  if (typeof request?.prompt !== "string" || request.prompt.length === 0) {
    throw new InputError("prompt must be a non-empty string");
  }
  return { ...checkCommon(request), prompt: request.prompt };
}

let counter = 0;
export const newId = (prefix) => `${prefix}-${Date.now().toString(36)}${(counter++).toString(36)}`;

export function chatCompletion({ id, model, text, toolCalls = [], finishReason, usage }) {
  const message = toolCalls.length
    ? { role: "assistant", content: text.trim() || null, tool_calls: toolCalls.map(({ index, ...call }) => call) }
    : { role: "assistant", content: text };
  return {
    id, object: "chat.completion", created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, message, finish_reason: finishReason }],
    usage,
  };
}

export function chatChunk({ id, model, delta, finishReason = null, usage }) {
  return {
    id, object: "chat.completion.chunk", created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, delta, finish_reason: finishReason }],
    ...(usage ? { usage } : {}),
  };
}

export function textCompletion({ id, model, text, finishReason, usage }) {
  return {
    id, object: "text_completion", created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, text, finish_reason: finishReason }], usage,
  };
}

export function textChunk({ id, model, text, finishReason = null, usage }) {
  return {
    id, object: "text_completion", created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, text, finish_reason: finishReason }], ...(usage ? { usage } : {}),
  };
}
