// Calls that must NOT type-check: tests/test_typescript.py expects a tsc error on each line marked
// `// wrong`, and on no other line.

import { createEngine, createWorkerEngine, loadModel } from "webrt";
import type { ChatMessage } from "webrt";

export async function wrong(worker: Worker): Promise<void> {
  const engine = await createEngine("./model/");
  await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: "16" }); // wrong
  await engine.chat.completions.create({ messages: [{ role: "robot", content: "Hi" }] }); // wrong
  const stream = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], stream: true });
  console.log(stream.choices); // wrong
  const reply = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }] });
  const text: string = reply.choices[0].message.content; // wrong
  await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], response_format: { type: "xml" } }); // wrong
  const tool: ChatMessage = { role: "tool", content: 42 }; // wrong
  await engine.completions.create({ prompt: ["a", "b"] }); // wrong
  await engine.embeddings.create({ input: [1, 2] }); // wrong
  await createEngine("./model/", { device: "cuda" }); // wrong
  await createWorkerEngine("worker.js", "./model/"); // wrong
  await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], stream: true, n: 3 }); // wrong
  await engine.completions.create({ prompt: "a", logit_bias: { 5: "ban" } }); // wrong
  await engine.completions.create({ prompt: "a", signal: "stop" }); // wrong
  const model = await loadModel("./model/");
  await model.forward("1 2 3"); // wrong
  console.log(text, tool);
}
