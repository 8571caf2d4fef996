// What the chat page shows, built from DOM nodes. The model's replies are Markdown: marked turns
// them into HTML in which any raw HTML the model wrote is escaped (shown as text), and DOMPurify
// then keeps only the tags and attributes Markdown makes, and links only to http(s) and mailto
// URLs. Everything else (your messages, errors, which may quote the model) is only ever added as
// text nodes or textContent.

import DOMPurify from "dompurify";
import { Marked } from "marked";

const MB = 1e6;

const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
// raw HTML in the model's Markdown (block or inline) is shown as the text it is
const markdown = new Marked({ gfm: true, breaks: true, renderer: { html: ({ text }) => escapeHtml(text) } });
const SANITIZE = {
  ALLOWED_TAGS: ["p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td"],
  ALLOWED_ATTR: ["href", "title", "start", "class", "align"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
};

/**
 * Show Markdown `text` in `body`: the whole text is parsed again on every call, so a reply can be
 * re-rendered as it streams (an unclosed code fence is a code block until it closes). Code blocks
 * get a copy button.
 */
export function renderMarkdown(body, text) {
  body.innerHTML = DOMPurify.sanitize(markdown.parse(text, { async: false }).trim(), SANITIZE);
  for (const link of body.querySelectorAll("a")) {
    link.target = "_blank";
    link.rel = "noopener noreferrer nofollow";
  }
  for (const pre of body.querySelectorAll("pre")) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(pre.querySelector("code")?.textContent ?? pre.textContent);
        button.textContent = "Copied";
      } catch {
        button.textContent = "Copy failed";
      }
    });
    pre.prepend(button);
  }
}

export function formatBytes(n) {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= MB ? `${(n / MB).toFixed(1)} MB` : `${(n / 1e3).toFixed(0)} kB`;
}

/** One chat message: {item, body (the text), stats (a line under it)}. */
export function addMessage(list, role, text = "") {
  const item = document.createElement("article");
  item.className = `message ${role}`;
  const who = document.createElement("div");
  who.className = "role";
  who.textContent = role === "user" ? "You" : "Model";
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  const stats = document.createElement("div");
  stats.className = "stats";
  item.append(who, body, stats);
  list.append(item);
  item.scrollIntoView({ block: "end" });
  return { item, body, stats };
}

export function appendText(body, text) {
  body.append(document.createTextNode(text));
}

/** Time to first token, decode speed and token count of a finished reply (its usage). */
export function formatStats(usage, finishReason) {
  const extra = usage.extra ?? {};
  const parts = [];
  if (extra.time_to_first_token_ms !== undefined) parts.push(`first token ${(extra.time_to_first_token_ms / 1000).toFixed(2)} s`);
  if (extra.decode_tokens_per_s) parts.push(`${extra.decode_tokens_per_s.toFixed(1)} tok/s`);
  if (extra.prefill_tokens_per_s) parts.push(`prefill ${extra.prefill_tokens_per_s.toFixed(1)} tok/s`);
  parts.push(`${usage.completion_tokens} tokens`);
  if (extra.device) parts.push(extra.device === "wasm" ? `wasm${extra.threads > 1 ? `, ${extra.threads} threads` : ""}` : "WebGPU");
  if (finishReason === "abort") parts.push("stopped");
  else if (finishReason === "length") parts.push("max tokens reached");
  return parts.join(" · ");
}

/**
 * Show a streamed reply (OpenAI chunks) in `message` as it arrives, rendered as Markdown; resolves
 * to {text (the model's own text), usage, finishReason}. The one path every reply takes to the screen.
 */
export async function renderStream(stream, message) {
  let usage = null;
  let finishReason = null;
  let text = "";
  message.item.classList.add("streaming");
  message.body.classList.add("markdown");
  try {
    for await (const chunk of stream) {
      const choice = chunk.choices?.[0];
      const delta = choice?.delta?.content ?? choice?.text; // chat or text completion chunks
      if (delta) {
        text += delta;
        renderMarkdown(message.body, text);
        message.item.scrollIntoView({ block: "end" });
      }
      if (choice?.finish_reason) finishReason = choice.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
  } finally {
    message.item.classList.remove("streaming");
  }
  if (usage) message.stats.textContent = formatStats(usage, finishReason);
  return { text, usage, finishReason };
}

/** "download · 41.9 / 98.2 MB · 43% · 120.5 MB/s" (and how much came from the cache). */
export function formatProgress({ stage, loaded = 0, total = 0, cached = 0 }, bytesPerSecond) {
  if (stage === "pipelines") return `pipelines · preparing ${total === 1 ? "the wasm module" : `${total} GPU kernels`}`;
  if (stage === "tuning") return `tuning · ${loaded} kernel schedules timed`;
  if (stage !== "download") return stage; // ready, and any stage a backend adds
  const parts = [stage, `${formatBytes(loaded)} / ${formatBytes(total)}`, `${total ? Math.floor((100 * loaded) / total) : 100}%`];
  if (bytesPerSecond) parts.push(`${formatBytes(bytesPerSecond)}/s`);
  if (cached) parts.push(`${formatBytes(cached)} from the cache`);
  return parts.join(" · ");
}

/** The backend in use and why it was chosen, from the engine's info. */
export function formatBackend(info) {
  let what;
  if (info.device === "webgpu") {
    const a = info.adapter ?? {};
    const name = [a.vendor, a.architecture].filter(Boolean).join(" ") || a.description || "unnamed adapter";
    what = `WebGPU on ${name}${a.software ? " (a software renderer)" : ""}`;
  } else {
    // threads_reason starts with the count: "2 threads (one per core)", "1 thread: the page is not ..."
    const threads = info.threads ?? 1;
    what = `WebAssembly (wasm), ${info.threads_reason ?? `${threads} thread${threads === 1 ? "" : "s"}`}`;
  }
  const schedules = { tuned: "tuned just now in this browser", indexeddb: "tuned earlier in this browser",
    artifact: "from the model's tuning DB", default: "compile-time defaults" }[info.tuning?.source];
  return `${what}. Why: ${info.device_reason ?? "requested"}.` + (schedules ? ` Kernel schedules: ${schedules}.` : "");
}

/** Replace an element's content with lines of text (a list of strings). */
export function showLines(element, lines, className = "") {
  element.replaceChildren(...lines.map((line) => {
    const p = document.createElement("p");
    p.textContent = line;
    if (className) p.className = className;
    return p;
  }));
}
