// Tool calling, OpenAI-shaped: checking `tools` and `tool_choice`, putting the tools and the
// earlier calls and results into the prompt, the grammar that keeps the model's calls well-formed,
// and reading the calls back out of the reply (whole, or as a stream of deltas).
//
// A call is written in one of the formats in TOOL_FORMATS, the one the model's chat template renders:
//   hermes (Hermes 2/3, Qwen 2.5, Qwen 3):   <tool_call>
//                                            {"name": "get_weather", "arguments": {"city": "Paris"}}
//                                            </tool_call>
//   llama3 (Llama 3.1, 3.2, 3.3):            {"name": "get_weather", "parameters": {"city": "Paris"}}
//                                            as the assistant's whole turn
// A template that renders one of them gets `tools` and the messages as they are (a tool's result
// stays a `role: "tool"` message; the template turns it into its own role, e.g. Llama's ipython).
// Any other template gets the generic format: Hermes' call syntax, the tool list and the
// instructions in the system message, earlier calls as the assistant's text, and results as user
// turns wrapped in <tool_response>...</tool_response>.

import { InputError } from "./errors.js";

export const CALL_OPEN = "<tool_call>";
export const CALL_CLOSE = "</tool_call>";

/**
 * The call formats, one description each: whether a template renders it (`rendersTools`), the text
 * a call is written as, where the grammar's tag begins and ends for a function (the arguments'
 * schema goes between), the text that starts a call in "auto" mode, and the parser of a reply.
 */
export const TOOL_FORMATS = {
  hermes: {
    rendersTools: (source) => source.includes(CALL_OPEN),
    callText: (name, args) => `${CALL_OPEN}\n{"name": ${JSON.stringify(name)}, "arguments": ${JSON.stringify(args)}}\n${CALL_CLOSE}`,
    tag: (name) => ({ begin: `${CALL_OPEN}\n{"name": ${JSON.stringify(name)}, "arguments": `, end: `}\n${CALL_CLOSE}` }),
    trigger: CALL_OPEN,
    separator: "\n",
    reader: () => new ToolCallStream(),
  },
  llama3: {
    // Meta's templates write a call as {"name": ..., "parameters": ...} and a result as an ipython turn
    rendersTools: (source) => source.includes('"parameters": ') && source.includes("ipython"),
    callText: (name, args) => `{"name": ${JSON.stringify(name)}, "parameters": ${JSON.stringify(args)}}`,
    tag: (name) => ({ begin: `{"name": ${JSON.stringify(name)}, "parameters": `, end: "}" }),
    trigger: '{"name": ',
    separator: "\n",  // unused: one call per turn (the templates refuse more), and xgrammar wants a separator
    reader: () => new WholeReplyCall("parameters"),
  },
};

/** The format a chat template renders tool calls in, or null (the generic format then applies). */
export function templateToolFormat(source) {
  if (typeof source !== "string" || !source.includes("tools")) return null;
  return Object.values(TOOL_FORMATS).find((format) => format.rendersTools(source)) ?? null;
}

/** The format a reply's calls are written in: the template's own, else the generic (Hermes') one. */
export const callFormat = (templateSource) => templateToolFormat(templateSource) ?? TOOL_FORMATS.hermes;
const CHOICES = ["auto", "none", "required"];

/**
 * Check request.tools / request.tool_choice. Returns null without tools, else {functions: [{name,
 * description, parameters}], choice: "auto" | "none" | "required" | {name}}.
 */
export function parseTools(tools, toolChoice) {
  if (tools === undefined || tools === null) {
    if (toolChoice !== undefined && toolChoice !== null && toolChoice !== "none") {
      throw new InputError(`tool_choice ${JSON.stringify(toolChoice)} needs tools; give tools: [{type: "function", function: {name, parameters}}]`);
    }
    return null;
  }
  if (!Array.isArray(tools) || tools.length === 0) {
    throw new InputError(`tools must be a non-empty list of {type: "function", function: {name, description, parameters}}, got ${JSON.stringify(tools)}`);
  }
  const functions = tools.map((tool, i) => {
    if (tool?.type !== "function" || typeof tool.function !== "object" || tool.function === null) {
      throw new InputError(`tools[${i}] must be {type: "function", function: {name, description, parameters}}`);
    }
    const { name, description, parameters } = tool.function;
    if (typeof name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
      throw new InputError(`tools[${i}].function.name must be 1-64 letters, digits, _ or -, got ${JSON.stringify(name)}`);
    }
    if (description !== undefined && typeof description !== "string") {
      throw new InputError(`tools[${i}].function.description must be a string`);
    }
    if (parameters !== undefined && (typeof parameters !== "object" || parameters === null || Array.isArray(parameters))) {
      throw new InputError(`tools[${i}].function.parameters must be a JSON Schema object, got ${JSON.stringify(parameters)}`);
    }
    return { name, description: description ?? "", parameters: parameters ?? { type: "object", properties: {} } };
  });
  const names = functions.map((f) => f.name);
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate) throw new InputError(`tools has two functions named ${duplicate}`);
  const choice = toolChoice ?? "auto";
  if (typeof choice === "string") {
    if (!CHOICES.includes(choice)) throw new InputError(`tool_choice must be one of ${CHOICES.join(", ")} or {type: "function", function: {name}}, got ${JSON.stringify(choice)}`);
    return { functions, choice };
  }
  const named = choice?.type === "function" ? choice.function?.name : undefined;
  if (!names.includes(named)) {
    throw new InputError(`tool_choice must be one of ${CHOICES.join(", ")} or {type: "function", function: {name}} naming one of the tools (${names.join(", ")}), got ${JSON.stringify(choice)}`);
  }
  return { functions, choice: { name: named } };
}

function parsedArguments(call) {
  try {
    return JSON.parse(call.function.arguments);
  } catch {
    return call.function.arguments;
  }
}

/**
 * Messages (and template variables) for the prompt. With the template's own tool format: the
 * messages as given and {tools}. Otherwise the generic format described at the top.
 */
export function toolPrompt(messages, tools, templateSource) {
  if (!tools || tools.choice === "none") return { messages: messages.map(plainMessage), variables: {} };
  if (templateToolFormat(templateSource)) {
    const openai = tools.functions.map((f) => ({ type: "function", function: f }));
    const shaped = messages.map((m) => (m.tool_calls
      ? { ...m, content: m.content ?? "", tool_calls: m.tool_calls.map((c) => ({ ...c, function: { name: c.function.name, arguments: parsedArguments(c) } })) }
      : m));
    return { messages: shaped, variables: { tools: openai } };
  }
  const listing = tools.functions.map((f) => JSON.stringify(f)).join("\n");
  const instructions = "You can call functions to help answer. The functions, as JSON:\n<tools>\n" + listing +
    `\n</tools>\nTo call a function, reply with\n${CALL_OPEN}\n{"name": <function name>, "arguments": <arguments as a JSON object>}\n${CALL_CLOSE}` +
    "\nA function's result comes back in <tool_response></tool_response>; then answer the user.";
  const out = messages.map(plainMessage);
  if (out[0]?.role === "system") out[0] = { role: "system", content: `${out[0].content}\n\n${instructions}` };
  else out.unshift({ role: "system", content: instructions });
  return { messages: out, variables: {} };
}

/** A message in the generic format: tool calls as text, tool results as a user turn. */
function plainMessage(m) {
  if (m.role === "tool") return { role: "user", content: `<tool_response>\n${m.content}\n</tool_response>` };
  if (m.tool_calls?.length) {
    // the same spacing as the grammar's tags (toolGrammar), so earlier calls look like the ones the model must write
    const calls = m.tool_calls.map((c) => TOOL_FORMATS.hermes.callText(c.function.name, parsedArguments(c))).join("\n");
    return { role: m.role, content: m.content ? `${m.content}\n${calls}` : calls };
  }
  return { role: m.role, content: m.content ?? "" };
}

/**
 * The structural tag (xgrammar) that keeps calls well-formed, in the format the reply is read in
 * (callFormat): "auto" lets free text run until the model starts a call, then forces a known
 * function's name and arguments matching its parameters; "required" and a named function allow
 * exactly one call and nothing else (a small model left free to go on would repeat it). null for "none".
 */
export function toolGrammar(tools, templateSource) {
  if (!tools || tools.choice === "none") return null;
  const format = callFormat(templateSource);
  const named = typeof tools.choice === "object" ? tools.choice.name : null;
  const tags = tools.functions.filter((f) => !named || f.name === named).map((f) => ({
    type: "tag", ...format.tag(f.name), content: { type: "json_schema", json_schema: f.parameters },
  }));
  const structure = tools.choice === "auto"
    ? { type: "triggered_tags", triggers: [format.trigger], tags, at_least_one: false, stop_after_first: false }
    : { type: "tags_with_separator", tags, separator: format.separator, at_least_one: true, stop_after_first: true };
  return { kind: "structural_tag", tag: { type: "structural_tag", format: structure }, field: "tools" };
}

let counter = 0;
const callId = () => `call_${Date.now().toString(36)}${(counter++).toString(36)}`;

/**
 * Splits the reply's text deltas into content and tool calls. push(delta) returns {content,
 * calls}: text outside calls (holding back a tail that may begin <tool_call>), and each call once
 * its closing tag arrived, as {index, id, type: "function", function: {name, arguments}}.
 */
export class ToolCallStream {
  constructor() {
    this.buffer = "";
    this.inside = false;
    this.calls = [];
  }

  push(delta) {
    this.buffer += delta;
    let content = "";
    const calls = [];
    while (true) {
      if (!this.inside) {
        const at = this.buffer.indexOf(CALL_OPEN);
        if (at < 0) {
          let keep = 0;
          for (let k = Math.min(CALL_OPEN.length - 1, this.buffer.length); k > 0; k--) {
            if (CALL_OPEN.startsWith(this.buffer.slice(-k))) { keep = k; break; }
          }
          content += this.buffer.slice(0, this.buffer.length - keep);
          this.buffer = this.buffer.slice(this.buffer.length - keep);
          break;
        }
        content += this.buffer.slice(0, at);
        this.buffer = this.buffer.slice(at);
        this.inside = true;
      }
      const end = this.buffer.indexOf(CALL_CLOSE);
      if (end < 0) break;
      const body = this.buffer.slice(CALL_OPEN.length, end);
      this.buffer = this.buffer.slice(end + CALL_CLOSE.length);
      this.inside = false;
      const call = this.parse(body);
      if (call) calls.push(call);
      else content += `${CALL_OPEN}${body}${CALL_CLOSE}`;
    }
    return { content, calls };
  }

  /** At the end: an unfinished call (max_tokens reached inside it) stays as text. */
  flush() {
    const content = this.buffer;
    this.buffer = "";
    return { content, calls: [] };
  }

  parse(body) {
    const call = parseCall(body, "arguments", this.calls.length);
    if (call) this.calls.push(call);
    return call;
  }
}

/** {index, id, type, function: {name, arguments}} from a call's JSON text, or null if it is not one. */
function parseCall(text, argumentsKey, index) {
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value?.name !== "string") return null;
  return { index, id: callId(), type: "function", function: { name: value.name, arguments: JSON.stringify(value[argumentsKey] ?? {}) } };
}

/**
 * The reader for formats whose call is the assistant's whole turn (Llama 3): a reply that begins
 * with "{" is held back and read as a call at the end; any other reply is streamed as content.
 * Same interface as ToolCallStream.
 */
export class WholeReplyCall {
  constructor(argumentsKey) {
    this.argumentsKey = argumentsKey;
    this.buffer = "";
    this.holding = null;  // undecided until the first non-space character
    this.calls = [];
  }

  push(delta) {
    if (this.holding === false) return { content: delta, calls: [] };
    this.buffer += delta;
    const start = this.buffer.trimStart();
    if (!start) return { content: "", calls: [] };
    this.holding = start.startsWith("{");
    if (this.holding) return { content: "", calls: [] };
    const content = this.buffer;
    this.buffer = "";
    return { content, calls: [] };
  }

  /** At the end: a held reply that is a call becomes one; anything else (unfinished) stays text. */
  flush() {
    const text = this.buffer;
    this.buffer = "";
    const call = this.holding ? parseCall(text.trim(), this.argumentsKey, 0) : null;
    if (!call) return { content: text, calls: [] };
    this.calls.push(call);
    return { content: "", calls: [call] };
  }
}
