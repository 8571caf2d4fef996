// Tool calling, OpenAI-shaped: checking `tools` and `tool_choice`, putting the tools and the
// earlier calls and results into the prompt, the grammar that keeps the model's calls well-formed,
// and reading the calls back out of the reply (whole, or as a stream of deltas).
//
// The call format is Hermes' (also Qwen 2.5's): a call is
//   <tool_call>
//   {"name": "get_weather", "arguments": {"city": "Paris"}}
//   </tool_call>
// and a tool's result goes back in a `role: "tool"` message. A chat template that already renders
// this format (it mentions <tool_call>) gets `tools` and the messages as they are. Any other template
// gets the generic format: the tool list and the instructions in the system message, earlier calls
// as the assistant's text, and results as user turns wrapped in <tool_response>...</tool_response>.

import { InputError } from "./errors.js";

export const CALL_OPEN = "<tool_call>";
export const CALL_CLOSE = "</tool_call>";
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

// the same spacing as the grammar's tags (toolGrammar), so earlier calls look like the ones the model must write
const callText = (name, args) => `${CALL_OPEN}\n{"name": ${JSON.stringify(name)}, "arguments": ${JSON.stringify(args)}}\n${CALL_CLOSE}`;

function parsedArguments(call) {
  try {
    return JSON.parse(call.function.arguments);
  } catch {
    return call.function.arguments;
  }
}

/** Whether a chat template renders Hermes-style tool calls itself. */
export const templateRendersTools = (source) => typeof source === "string" && source.includes("tools") && source.includes(CALL_OPEN);

/**
 * Messages (and template variables) for the prompt. With the template's own tool format: the
 * messages as given and {tools}. Otherwise the generic format described at the top.
 */
export function toolPrompt(messages, tools, templateSource) {
  if (!tools || tools.choice === "none") return { messages: messages.map(plainMessage), variables: {} };
  if (templateRendersTools(templateSource)) {
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
    const calls = m.tool_calls.map((c) => callText(c.function.name, parsedArguments(c))).join("\n");
    return { role: m.role, content: m.content ? `${m.content}\n${calls}` : calls };
  }
  return { role: m.role, content: m.content ?? "" };
}

/**
 * The structural tag (xgrammar) that keeps calls well-formed: "auto" lets free text run until a
 * model writes <tool_call>, then forces a known function's name and arguments matching its
 * parameters; "required" and a named function allow exactly one call and nothing else (a small model
 * left free to go on would repeat it). null for "none".
 */
export function toolGrammar(tools) {
  if (!tools || tools.choice === "none") return null;
  const named = typeof tools.choice === "object" ? tools.choice.name : null;
  const tags = tools.functions.filter((f) => !named || f.name === named).map((f) => ({
    type: "tag", begin: `${CALL_OPEN}\n{"name": ${JSON.stringify(f.name)}, "arguments": `,
    content: { type: "json_schema", json_schema: f.parameters }, end: `}\n${CALL_CLOSE}`,
  }));
  const format = tools.choice === "auto"
    ? { type: "triggered_tags", triggers: [CALL_OPEN], tags, at_least_one: false, stop_after_first: false }
    : { type: "tags_with_separator", tags, separator: "\n", at_least_one: true, stop_after_first: true };
  return { kind: "structural_tag", tag: { type: "structural_tag", format }, field: "tools" };
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
    let value;
    try {
      value = JSON.parse(body);
    } catch {
      return null;
    }
    if (typeof value?.name !== "string") return null;
    const call = { index: this.calls.length, id: callId(), type: "function",
                   function: { name: value.name, arguments: JSON.stringify(value.arguments ?? {}) } };
    this.calls.push(call);
    return call;
  }
}
