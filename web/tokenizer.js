// The model's tokenizer (tokenizer.json through @huggingface/tokenizers) and chat template
// (rendered with @huggingface/jinja), loaded from the artifact's files.

import { tokenizerLibraries } from "./dependencies.js";
import { ArtifactFormatError } from "./errors.js";
import { fetchVerified } from "./loader.js";
import { releaseBytes } from "./memory.js";

async function fileText(base, manifest, name) {
  const entry = (manifest.files ?? []).find((f) => f.file === name);
  if (!entry) return null;
  const bytes = await fetchVerified(base, entry.file, entry);
  const text = new TextDecoder().decode(bytes);
  releaseBytes(bytes); // Gemma 3's tokenizer.json is 14 MB
  return text;
}

/**
 * @huggingface/tokenizers (0.2.0) keeps the parsed tokenizer.json, and a BPE model its merge list,
 * beside the maps it builds from them in its constructor, and reads neither again: for Gemma 3's
 * 262,144 tokens and 514,906 merges that held ~105 MiB of the page's JS heap (bench/gemma3_wllama.md).
 */
function releaseParsedTables(json, tokenizer) {
  if (json.model) {
    delete json.model.vocab;
    if (Array.isArray(json.model.merges)) json.model.merges.length = 0;
  }
  if (Array.isArray(tokenizer.model?.merges)) tokenizer.model.merges.length = 0; // its own copy in the older "a b" format
}

function tokenText(token) {
  return typeof token === "string" ? token : token?.content;
}

export class ChatTokenizer {
  static async load(base, manifest) {
    const [json, configText, templateText, generationText] = await Promise.all(
      ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"].map((f) => fileText(base, manifest, f)));
    if (!json) throw new ArtifactFormatError("the artifact has no tokenizer.json; compile it from a checkpoint that has one");
    const config = configText ? JSON.parse(configText) : {};
    const generation = generationText ? JSON.parse(generationText) : {};
    const libraries = await tokenizerLibraries();
    return new ChatTokenizer(libraries, JSON.parse(json), config, templateText ?? config.chat_template ?? null, generation);
  }

  constructor({ Tokenizer, Template }, json, config, template, generation) {
    this.tokenizer = new Tokenizer(json, config);
    releaseParsedTables(json, this.tokenizer);
    this.config = config;
    this.template = template ? new Template(template) : null;
    this.templateSource = template; // tools.js asks whether it renders tool calls itself
    this.bosToken = tokenText(config.bos_token);
    this.eosToken = tokenText(config.eos_token);
    // generation stops at the tokenizer's eos token and at generation_config's eos ids
    const ids = [generation.eos_token_id ?? []].flat();
    if (this.eosToken) ids.push(this.tokenizer.token_to_id(this.eosToken));
    this.stopIds = new Set(ids.filter((id) => id !== undefined && id !== null));
  }

  encode(text) {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  /** A completion prompt: with the BOS (and EOS) that the tokenizer's post-processor adds, as
   * llama.cpp and transformers do for a base model such as Gemma 3 (a chat template writes its own). */
  encodePrompt(text) {
    return this.tokenizer.encode(text).ids;
  }

  decode(ids) {
    return this.tokenizer.decode(ids, { skip_special_tokens: true });
  }

  /** The prompt text for a conversation, ending with the assistant's turn opening; `variables` (e.g. tools) go to the template. */
  applyChatTemplate(messages, variables = {}) {
    if (!this.template) return messages.map((m) => m.content).join("\n");
    return this.template.render({
      messages, add_generation_prompt: true, bos_token: this.bosToken ?? "", eos_token: this.eosToken ?? "", ...variables,
    });
  }
}
