// webrt's JS shell: load a compiled artifact and run it in the browser.
//
//   import { createEngine } from "webrt";
//   const engine = await createEngine("./SmolLM2-135M-Instruct-q4f32/");
//   const reply = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi!" }] });
//
//   import { loadModel } from "webrt";            // lower level: logits for token ids
//   const { logits } = await (await loadModel("./out/")).forward([5, 17, 300]);

export * from "./errors.js";
export { EmbeddingEngine, Embeddings, EmbeddingTokenizer } from "./embeddings.js";
export { createEngine, Engine } from "./engine.js";
export { allowAllMask, Generator, greedyInputs } from "./generator.js";
export { GrammarCompiler, WHITESPACE_RUN_CAP } from "./grammar.js";
export { FORMAT_VERSION, useFileCache } from "./loader.js";
export { loadModel, Model } from "./model.js";
export { Sampler } from "./sampler.js";
export { ChatTokenizer } from "./tokenizer.js";
export { exportTuningDB, importTuningDB } from "./tuner.js";
export { createWorkerEngine } from "./worker_engine.js";
