// The shell's npm dependencies (tokenizer, template engine, grammar engine), loaded on first use.
//
// A page resolves their bare specifiers through its import map or bundler. A module Worker has no
// import map, so the page side of a worker engine resolves them to URLs and passes those in
// (worker_engine.js -> worker.js -> useDependencyUrls).

const urls = {};

export function useDependencyUrls(resolved) {
  Object.assign(urls, resolved);
}

/**
 * Absolute URLs of the dependencies, as this (page) context resolves them through its import map.
 * A specifier the page cannot resolve is left out: a bundled app has no import map, and its worker
 * bundle carries the dependencies itself. The grammar engine is needed only for structured output,
 * so a page may also leave it out of its import map.
 */
export function resolveDependencyUrls() {
  return {
    ...optionalUrl("@huggingface/tokenizers"),
    ...optionalUrl("@huggingface/jinja"),
    ...optionalUrl("@mlc-ai/web-xgrammar"),
  };
}

function optionalUrl(specifier) {
  try {
    return { [specifier]: import.meta.resolve(specifier) };
  } catch {
    return {};
  }
}

/**
 * xgrammar (structured output, grammar.js). Its bundle is UMD: loaded as a module it defines
 * globalThis.xgrammar rather than exports.
 */
export async function grammarLibrary() {
  const url = urls["@mlc-ai/web-xgrammar"];
  const module = await (url ? import(url) : import("@mlc-ai/web-xgrammar"));
  return module.GrammarCompiler ? module : module.default?.GrammarCompiler ? module.default : globalThis.xgrammar;
}

export async function tokenizerLibraries() {
  const [tokenizers, jinja] = await Promise.all([
    urls["@huggingface/tokenizers"] ? import(urls["@huggingface/tokenizers"]) : import("@huggingface/tokenizers"),
    urls["@huggingface/jinja"] ? import(urls["@huggingface/jinja"]) : import("@huggingface/jinja"),
  ]);
  return { Tokenizer: tokenizers.Tokenizer, Template: jinja.Template };
}
