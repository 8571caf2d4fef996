// Downloaded artifact files kept in the Cache API, so a reload fetches no weights again, and
// downloads that resume: while a file streams in, every PART_BYTES received are stored as a part,
// and the next attempt after an interruption asks the server only for the rest (HTTP Range).
// A server that ignores Range (a plain static host) answers 200 with the whole file: start over.
//
// The cache holds bytes, not trust: the loader checks every file's SHA-256 against the manifest
// after reading it from here as well as after downloading it (loader.js, fetchVerified).

import { FetchError } from "./errors.js";

const PART_BYTES = 8 << 20;

/** The cache key of part `index` of a file still downloading (never fetched from the network). */
function partKey(url, index) {
  const key = new URL(url);
  key.searchParams.set("webrt-part", String(index));
  return key.href;
}

function concat(chunks, length) {
  const out = new Uint8Array(length);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

export class FileCache {
  /** A named cache, or null where the Cache API is missing (an insecure http:// origin). */
  static async open(name) {
    if (!name || !globalThis.caches) return null;
    return new FileCache(await caches.open(name));
  }

  constructor(cache) {
    this.cache = cache;
  }

  /** The whole file's bytes, or null when it is not (completely) cached. */
  async read(url) {
    const response = await this.cache.match(url);
    return response ? new Uint8Array(await response.arrayBuffer()) : null;
  }

  /** Keep a complete, verified file; its parts are no longer needed. */
  async store(url, bytes) {
    await this.cache.put(url, new Response(bytes, { headers: {
      "Content-Type": "application/octet-stream", "Content-Length": String(bytes.byteLength) } }));
    await this.dropParts(url);
  }

  /** Forget a file and any parts of it (after a failed integrity check, say). */
  async remove(url) {
    await this.cache.delete(url);
    await this.dropParts(url);
  }

  async parts(url) {
    const parts = [];
    for (let i = 0; ; i++) {
      const response = await this.cache.match(partKey(url, i));
      if (!response) return parts;
      parts.push(new Uint8Array(await response.arrayBuffer()));
    }
  }

  async putPart(key, bytes) {
    try {
      await this.cache.put(key, new Response(bytes));
    } catch {
      // storage is full: this download just cannot resume
    }
  }

  async dropParts(url) {
    for (let i = 0; await this.cache.delete(partKey(url, i)); i++);
  }

  /**
   * Download url, continuing from the parts an earlier, interrupted attempt stored. onBytes(n,
   * {cached}) is told about each run of bytes: cached ones first, then each network chunk.
   */
  async download(url, onBytes = () => {}, { signal } = {}) {
    let parts = await this.parts(url);
    let have = parts.reduce((sum, p) => sum + p.byteLength, 0);
    let response;
    try {
      response = await fetch(url, { headers: have ? { Range: `bytes=${have}-` } : {}, signal });
    } catch (err) {
      throw new FetchError(`could not fetch ${url} (${err.message}); check that the site is served`);
    }
    if (have && !(response.status === 206 && response.headers.get("Content-Range")?.startsWith(`bytes ${have}-`))) {
      await this.dropParts(url); // the server ignores Range or refuses this one: start over
      if (!response.ok) return this.download(url, onBytes, { signal });
      parts = [];
      have = 0;
    }
    if (!response.ok) {
      throw new FetchError(`fetching ${url} gave HTTP ${response.status}; check that the site is complete`);
    }
    if (have) onBytes(have, { cached: true });
    const chunks = [...parts];
    let nextPart = parts.length;
    let received = have;
    let pending = []; // network chunks not yet stored as a part
    let pendingBytes = 0;
    const reader = response.body.getReader();
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        received += value.byteLength;
        onBytes(value.byteLength, { cached: false });
        pending.push(value);
        pendingBytes += value.byteLength;
        if (pendingBytes >= PART_BYTES) {
          await this.putPart(partKey(url, nextPart++), concat(pending, pendingBytes));
          pending = [];
          pendingBytes = 0;
        }
      }
    } catch (err) {
      throw new FetchError(`the download of ${url} stopped after ${received} bytes (${err.message}); ` +
        "loading again resumes it");
    }
    return concat(chunks, received);
  }
}

/** Bytes of these URLs already complete in the cache (to tell what a load still has to download). */
export async function cachedBytes(name, urls) {
  const cache = await FileCache.open(name);
  if (!cache) return 0;
  let total = 0;
  for (const url of urls) {
    const response = await cache.cache.match(url);
    if (response) total += Number(response.headers.get("Content-Length")) || (await response.arrayBuffer()).byteLength;
  }
  return total;
}

/** Drop every cached file whose URL is not under one of `keep` (older versions of the models). */
export async function dropStale(name, keep) {
  const cache = await FileCache.open(name);
  if (!cache) return 0;
  let dropped = 0;
  for (const request of await cache.cache.keys()) {
    if (!keep.some((prefix) => request.url.startsWith(prefix))) {
      await cache.cache.delete(request);
      dropped += 1;
    }
  }
  return dropped;
}
