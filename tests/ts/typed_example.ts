// A program written against webrt's types (web/*.d.ts), in OpenAI's request and response shapes.
// tests/test_typescript.py type-checks it with `tsc --noEmit --strict`; it is not run. No `any`.

import {
  ContextWindowError, createEngine, createWorkerEngine, DeviceLostError, EngineStateError, exportTuningDB,
  importTuningDB, InputError, loadModel, useFileCache, WebrtError,
} from "webrt";
import type {
  ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage, Completion, CompletionUsage,
  EmbeddingResponse, EngineInfo, FinishReason, FunctionTool, ToolCall, TuningDB, WebrtEngine, WorkerEngine,
} from "webrt";
import { GrammarError } from "webrt/errors";

const tools: FunctionTool[] = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];

function describeUsage(usage: CompletionUsage): string {
  const decode = usage.extra.decode_tokens_per_s;
  const grammar = usage.extra.grammar ? `, ${usage.extra.grammar.ms_per_token.toFixed(2)} ms/token in the grammar` : "";
  return `${usage.prompt_tokens} + ${usage.completion_tokens} tokens, first token after ` +
    `${usage.extra.time_to_first_token_ms.toFixed(0)} ms, ${decode === null ? "-" : decode.toFixed(1)} tok/s on ` +
    `${usage.extra.device}${grammar}`;
}

async function runTool(call: ToolCall): Promise<string> {
  const args: unknown = JSON.parse(call.function.arguments);
  const city = typeof args === "object" && args !== null && "city" in args ? String(args.city) : "?";
  return JSON.stringify({ city, temperature_c: 21 });
}

async function chat(engine: WebrtEngine): Promise<void> {
  const messages: ChatMessage[] = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "What is the capital of France?" },
  ];
  // non-streaming: a ChatCompletion
  const reply: ChatCompletion = await engine.chat.completions.create({ messages, max_tokens: 16, temperature: 0, seed: 7 });
  const answer: string | null = reply.choices[0].message.content;
  const reason: FinishReason = reply.choices[0].finish_reason;
  console.log(answer, reason, describeUsage(reply.usage), reply.usage.extra.token_ids.length);

  // streaming: chunks with deltas, usage on the last one
  let text = "";
  const stream = await engine.chat.completions.create({ messages, stream: true, stop: ["\n"], top_p: 0.9 });
  for await (const chunk of stream) {
    const c: ChatCompletionChunk = chunk;
    text += c.choices[0].delta.content ?? "";
    if (c.choices[0].finish_reason === "abort") console.log("interrupted");
    if (c.usage) console.log(describeUsage(c.usage));
    if (text.length > 200) await engine.interrupt();
  }

  // tools: the reply's tool_calls go back as a role "tool" message
  const withTools = await engine.chat.completions.create({ messages, tools, tool_choice: "auto" });
  const calls: ToolCall[] = withTools.choices[0].message.tool_calls ?? [];
  if (withTools.choices[0].finish_reason === "tool_calls") {
    const followUp: ChatMessage[] = [...messages, { role: "assistant", content: null, tool_calls: calls }];
    for (const call of calls) followUp.push({ role: "tool", tool_call_id: call.id, content: await runTool(call) });
    const final = await engine.chat.completions.create({ messages: followUp, tool_choice: { type: "function", function: { name: "get_weather" } }, tools });
    console.log(final.choices[0].message.content);
  }

  // structured output: json_object, json_schema, or an EBNF grammar
  const schema = { type: "object", properties: { capital: { type: "string" } }, required: ["capital"] };
  const json = await engine.chat.completions.create({
    messages, response_format: { type: "json_schema", json_schema: { name: "capital", schema, strict: true } } });
  const parsed: unknown = JSON.parse(json.choices[0].message.content ?? "{}");
  console.log(parsed);
  await engine.chat.completions.create({ messages, response_format: { type: "json_object" } });
  await engine.chat.completions.create({ messages, response_format: { type: "grammar", grammar: 'root ::= "yes" | "no"' } });

  // a request built elsewhere, stream unknown until run time: either shape comes back
  const request: ChatCompletionRequest = Math.random() > 0.5 ? { messages, stream: true } : { messages };
  const either = await engine.chat.completions.create(request);
  if (Symbol.asyncIterator in either) {
    for await (const chunk of either) console.log(chunk.choices[0].delta.role);
  } else {
    console.log(either.choices[0].message.role);
  }

  // several samples, a token kept out, and a request that can be cancelled
  const samples = await engine.chat.completions.create({ messages, n: 3, seed: 1, temperature: 0.8, logit_bias: { 504: -100, "30": 5 } });
  console.log(samples.choices.map((c) => c.message.content), samples.usage.extra.choice_token_ids?.length);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 1000);
  for await (const chunk of await engine.chat.completions.create({
    messages, stream: true, signal: controller.signal, stream_options: { include_usage: true } })) {
    if (chunk.choices.length === 0 && chunk.usage) console.log("usage", chunk.usage.total_tokens);
    else if (chunk.choices[0].finish_reason === "abort") console.log("cancelled");
  }

  // text completion
  const done: Completion = await engine.completions.create({ prompt: "Once upon a time", max_tokens: 8, n: 1 });
  console.log(done.choices[0].text);
  for await (const chunk of await engine.completions.create({ prompt: "Once", stream: true })) console.log(chunk.choices[0].text);
  await engine.resetChat();
}

async function embed(engine: WebrtEngine): Promise<number[][]> {
  const out: EmbeddingResponse = await engine.embeddings.create({ input: ["a cat", "a dog"], dimensions: 128 });
  console.log(out.usage.extra.sentences_per_s, out.data.map((d) => d.index));
  return out.data.map((d) => d.embedding);
}

export async function main(): Promise<void> {
  useFileCache("webrt-files");
  const engine = await createEngine("./SmolLM2-135M-Instruct-q4f32/", {
    device: "auto", threads: 2, tuning: { budget_s: 10 }, contextPolicy: "sliding",
    onProgress: ({ stage, loaded, total }) => console.log(stage, loaded, total),
  });
  const info: EngineInfo = engine.info;
  console.log(info.device, info.device_reason, info.adapter?.software, info.tuning?.source);
  try {
    await chat(engine);
  } catch (err) {
    if (err instanceof ContextWindowError || err instanceof InputError) console.log("bad request:", err.message);
    else if (err instanceof DeviceLostError) console.log("device lost:", err.reason);
    else if (err instanceof GrammarError || err instanceof EngineStateError) console.log(err.name);
    else if (err instanceof WebrtError) throw err;
  } finally {
    engine.unload();
  }

  const embedder = await createEngine("./all-MiniLM-L6-v2/", { batchSize: 16 });
  console.log((await embed(embedder)).length);

  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  const remote: WorkerEngine = await createWorkerEngine(worker, "./SmolLM2-135M-Instruct-q4f32/", { device: "wasm", cache: "webrt-files" });
  await chat(remote);
  await remote.unload();

  // the lower level: logits for token ids
  const model = await loadModel("./SmolLM2-135M-Instruct-q4f32/", { device: "webgpu", tuning: false });
  const { logits, forward_ms } = await model.forward([1, 2, 3]);
  const last: Float32Array = logits[logits.length - 1];
  console.log(last.length === model.manifest.model.config.vocab_size, forward_ms, model.gpuBytes);
  model.unload();

  // the tuning DB: carry winners from one browser to another
  const db: TuningDB = await exportTuningDB();
  const added: number = await importTuningDB(JSON.parse(JSON.stringify(db)) as TuningDB);
  console.log(db.records.map((r) => `${r.backend}:${r.device}`), added);
}
