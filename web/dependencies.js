// The shell's npm dependencies (tokenizer, template engine), loaded on first use.
//
// A page resolves their bare specifiers through its import map or bundler. A module Worker has no
// import map, so the page side of a worker engine resolves them to URLs and passes those in
// (worker_engine.js -> worker.js -> useDependencyUrls).

const urls = {};

export function useDependencyUrls(resolved) {
  Object.assign(urls, resolved);
}

/** Absolute URLs of the dependencies, as this (page) context resolves them. */
export function resolveDependencyUrls() {
  return {
    "@huggingface/tokenizers": import.meta.resolve("@huggingface/tokenizers"),
    "@huggingface/jinja": import.meta.resolve("@huggingface/jinja"),
  };
}

export async function tokenizerLibraries() {
  const [tokenizers, jinja] = await Promise.all([
    urls["@huggingface/tokenizers"] ? import(urls["@huggingface/tokenizers"]) : import("@huggingface/tokenizers"),
    urls["@huggingface/jinja"] ? import(urls["@huggingface/jinja"]) : import("@huggingface/jinja"),
  ]);
  return { Tokenizer: tokenizers.Tokenizer, Template: jinja.Template };
}
