// Structured output: a request's response_format (json_object, json_schema, grammar) or its tools
// become a grammar that xgrammar (npm @mlc-ai/web-xgrammar, wasm) compiles against the model's
// vocabulary. Per step, a GrammarConstraint fills the vocabulary bitmask that the prefill/decode
// entries apply to the logits on the device, before the penalties and the choice
// (webrt/models/sampling.py, mask_tokens), so a step still reads back only the sampled token.
//
// JSON (json_object, json_schema, tool arguments) is compiled in xgrammar's compact form: one line,
// separators ", " and ": ", no free whitespace between elements. Inside strings and free text,
// a run of more than WHITESPACE_RUN_CAP whitespace characters is cut off by masking the tokens
// that are only whitespace (runaway whitespace is a known failure of small models in JSON mode).

import { grammarLibrary } from "./dependencies.js";
import { GrammarError, InputError } from "./errors.js";
import { fetchVerified } from "./loader.js";

export const WHITESPACE_RUN_CAP = 16;

// xgrammar's C++ side reports why it refused a schema or grammar on stderr (emscripten's printErr,
// bound to console.error when the library loads) and then throws a bare "Aborted()". The last
// "[FATAL]" line is kept, so the error the caller sees says what was wrong.
let lastFatal = "";
function keepFatalLines() {
  const original = console.error;
  console.error = (...args) => {
    const text = args.join(" ");
    if (text.includes("[FATAL]")) lastFatal = text.replace(/^.*\[FATAL\][^:]*:\d+:\s*/, "").trim();
    original.apply(console, args);
  };
}

/**
 * Check request.response_format. Returns null for none / {type: "text"}, else a grammar spec for
 * GrammarCompiler.compile: json_object (any JSON object), json_schema ({json_schema: {name, schema,
 * strict}}) or grammar ({grammar: "<EBNF>"}, xgrammar's EBNF with a root rule).
 */
export function parseResponseFormat(format) {
  if (format === undefined || format === null || format?.type === "text") return null;
  const kinds = '"text", "json_object", "json_schema" or "grammar"';
  if (typeof format !== "object") throw new InputError(`response_format must be {type: ${kinds}}, got ${JSON.stringify(format)}`);
  switch (format.type) {
    case "json_object":
      return { kind: "json_schema", schema: { type: "object" }, strict: false, field: "response_format" };
    case "json_schema": {
      const schema = format.json_schema?.schema;
      if (typeof format.json_schema !== "object" || format.json_schema === null) {
        throw new InputError("response_format.json_schema must be {name, schema, strict}");
      }
      if (!(typeof schema === "boolean" || (typeof schema === "object" && schema !== null && !Array.isArray(schema)))) {
        throw new InputError(`response_format.json_schema.schema must be a JSON Schema (an object), got ${JSON.stringify(schema)}`);
      }
      return { kind: "json_schema", schema, strict: format.json_schema.strict !== false, field: "response_format.json_schema.schema" };
    }
    case "grammar":
      if (typeof format.grammar !== "string" || !format.grammar.trim()) {
        throw new InputError("response_format.grammar must be a non-empty EBNF string with a root rule (root ::= ...)");
      }
      return { kind: "ebnf", grammar: format.grammar, field: "response_format.grammar" };
    default:
      throw new InputError(`response_format.type must be ${kinds}, got ${JSON.stringify(format.type)}`);
  }
}

let library = null;
async function xgrammar() {
  if (!library) {
    keepFatalLines();
    library = grammarLibrary();
  }
  return library;
}

/** xgrammar's vocabulary type, from the tokenizer.json's decoder (byte-level BPE, byte fallback, raw). */
function vocabType(json) {
  const decoders = json.decoder?.type === "Sequence" ? json.decoder.decoders : [json.decoder];
  if (decoders.some((d) => d?.type === "ByteLevel")) return "byte_level";
  if (decoders.some((d) => d?.type === "ByteFallback")) return "byte_fallback";
  return "raw";
}

/** Whether the tokenizer puts a space before the text (SentencePiece's "▁" prefix). */
function prependsSpace(json) {
  const parts = (x) => (x?.type === "Sequence" ? x.normalizers ?? x.pretokenizers ?? [] : [x]);
  return parts(json.normalizer).some((n) => n?.type === "Prepend" && n.prepend === "▁") ||
    parts(json.pre_tokenizer).some((p) => p?.type === "Metaspace" && (p.prepend_scheme === "always" || p.add_prefix_space === true));
}

/** Token strings by id (the model's vocab and the added tokens), padded to the logits' size. */
function encodedVocab(json, size) {
  const vocab = new Array(size).fill("");
  for (const [token, id] of Object.entries(json.model?.vocab ?? {})) if (id < size) vocab[id] = token;
  for (const t of json.added_tokens ?? []) if (t.id < size) vocab[t.id] = t.content;
  return vocab;
}

/**
 * The grammar compiler of one model: the vocabulary (from the artifact's tokenizer.json) prepared
 * once, compiled grammars cached by their definition.
 */
export class GrammarCompiler {
  static async load(base, manifest, stopIds) {
    const entry = (manifest.files ?? []).find((f) => f.file === "tokenizer.json");
    const json = JSON.parse(new TextDecoder().decode(await fetchVerified(base, entry.file, entry)));
    const xg = await xgrammar();
    const vocabSize = manifest.model.config.vocab_size;
    const info = await xg.TokenizerInfo.createTokenizerInfo(encodedVocab(json, vocabSize), vocabType(json),
      prependsSpace(json), vocabSize, [...stopIds]);
    const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, true);
    return new GrammarCompiler(xg, info, compiler, vocabSize);
  }

  constructor(xg, info, compiler, vocabSize) {
    this.xg = xg;
    this.compiler = compiler;
    this.vocabSize = vocabSize;
    this.cache = new Map();
    Object.assign(this, whitespaceTokens(info, vocabSize)); // whitespace, trailing
  }

  /**
   * A compiled grammar for a grammar spec: {kind: "json_schema", schema, field}, {kind: "ebnf",
   * grammar, field} or {kind: "structural_tag", tag, field}; `field` names the request field in errors.
   */
  async compile(spec) {
    const key = JSON.stringify(spec);
    if (!this.cache.has(key)) {
      lastFatal = "";
      try {
        this.cache.set(key, await this.compileUncached(spec));
      } catch (err) {
        const why = lastFatal || err.message || String(err);
        throw new GrammarError(`${spec.field} could not be compiled: ${why}` +
          (spec.kind === "ebnf" ? "; write it in xgrammar's EBNF (rules like root ::= ...)" : "; give a valid JSON Schema"));
      }
    }
    return this.cache.get(key);
  }

  compileUncached(spec) {
    switch (spec.kind) {
      case "json_schema": // compact JSON (anyWhitespace false, one line); strict: no properties the schema does not name
        return this.compiler.compileJSONSchema(JSON.stringify(spec.schema), false, -1, undefined, spec.strict ?? true);
      case "ebnf":
        return this.compiler.compileGrammar(spec.grammar, "root");
      case "structural_tag":
        return this.compiler.compileStructuralTag(spec.tag);
      default:
        throw new InputError(`unknown grammar kind ${spec.kind}`);
    }
  }

  /** A fresh matcher for one generation. */
  async constraint(spec) {
    const compiled = await this.compile(spec);
    const matcher = await this.xg.GrammarMatcher.createGrammarMatcher(compiled);
    return new GrammarConstraint(matcher, this.whitespace, this.trailing);
  }
}

/**
 * For the runaway-whitespace cap: `whitespace`, the bitmask of the tokens whose text is only
 * whitespace, and `trailing`, each token's count of whitespace characters at its end.
 */
function whitespaceTokens(info, vocabSize) {
  const decoded = info.getDecodedVocabHandle();
  const whitespace = new Int32Array(Math.ceil(vocabSize / 32));
  const trailing = new Uint16Array(vocabSize);
  const n = Math.min(decoded.size(), vocabSize);
  for (let id = 0; id < n; id++) {
    const text = decoded.get(id) ?? "";
    trailing[id] = text.length - text.trimEnd().length;
    if (text && trailing[id] === text.length) whitespace[id >> 5] |= 1 << (id & 31);
  }
  decoded.delete?.();
  return { whitespace, trailing };
}

/**
 * One generation's grammar state. mask() gives the allowed tokens for the next step; accept(token)
 * advances. stats: milliseconds in xgrammar (mask filling and token acceptance) and steps.
 */
export class GrammarConstraint {
  constructor(matcher, whitespace, trailing) {
    this.matcher = matcher;
    this.whitespace = whitespace;
    this.trailing = trailing;
    this.run = 0; // whitespace characters at the end of the text so far
    // overlapped: masks filled while the device ran the step's forward pass (WebGPU)
    this.stats = { mask_ms: 0, accept_ms: 0, steps: 0, overlapped: 0 };
  }

  /** The bitmask (Int32Array, one bit per token) of the tokens the grammar allows next. */
  async mask(inFlight = false) {
    const t0 = performance.now();
    const mask = await this.matcher.getNextTokenBitmask();
    if (this.run >= WHITESPACE_RUN_CAP) {
      // drop whitespace-only tokens, unless the grammar allows nothing else
      const cut = mask.map((word, i) => word & ~this.whitespace[i]);
      if (cut.some((word) => word !== 0)) mask.set(cut);
    }
    this.stats.mask_ms += performance.now() - t0;
    this.stats.steps += 1;
    if (inFlight) this.stats.overlapped += 1;
    return mask;
  }

  /** Advance by the sampled token. */
  accept(token) {
    const t0 = performance.now();
    const ok = this.matcher.acceptToken(token);
    this.stats.accept_ms += performance.now() - t0;
    if (!ok) throw new GrammarError(`the grammar rejected token ${token}, which its own mask allowed`);
    const onlyWhitespace = (this.whitespace[token >> 5] >> (token & 31)) & 1;
    this.run = onlyWhitespace ? this.run + this.trailing[token] : this.trailing[token];
  }

  /** The grammar reached its end and accepted a stop token. */
  get terminated() {
    return this.matcher.isTerminated();
  }

  dispose() {
    this.matcher.dispose();
  }
}
