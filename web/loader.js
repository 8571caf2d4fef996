// Fetches an artifact (docs/ARTIFACT.md): the manifest, the kernels and the weight shards, each
// checked against the SHA-256 the manifest records before anything is used. With a file cache
// (useFileCache), files come from the Cache API when they are there, and downloads resume.

import { ArtifactFormatError, FetchError, IntegrityError } from "./errors.js";
import { FileCache } from "./file_cache.js";
import { askForGarbageCollection, releaseBytes } from "./memory.js";

export const FORMAT = "webrt-artifact";
export const FORMAT_VERSION = 1;
const PROGRESS_STEP = 1 << 20; // bytes between download progress reports
// One download at a time. Measured on Gemma 3 270M, wasm, 2 threads, PSS every 0.03 s
// (bench/page_memory_timeline.py): with two in flight the page's memory had bursts of 20-60 MiB
// outside the JS heap during the download (peaks 516-557 MiB over ten loads), with one it stays
// at 516-524 MiB; the localhost download is ~0.5 s slower (3.6 against 3.1 s). Not measured on a
// real network, where one stream usually fills the bandwidth.
const SHARDS_IN_FLIGHT = 1;

let fileCacheName = null;

/**
 * Keep the artifact files this context (page or worker) loads in the Cache API under `name`
 * (null: off), so a reload downloads nothing again and a cut-off download resumes (file_cache.js).
 */
export function useFileCache(name) {
  fileCacheName = name ?? null;
}

async function fetchOk(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new FetchError(`could not fetch ${url} (${err.message}); check that the artifact is served`);
  }
  if (!response.ok) {
    throw new FetchError(`fetching ${url} gave HTTP ${response.status}; check that the artifact is complete`);
  }
  return response;
}

/**
 * The body of url; onBytes(n, {cached: false}) hears about each chunk as it arrives. With its size
 * known (a manifest entry's bytes), chunks go straight into one buffer of that size: collecting
 * them and then joining held every weight shard twice while it downloaded (bench/gemma3_wllama.md).
 */
async function fetchBytes(url, onBytes = () => {}, expectedBytes = undefined) {
  const response = await fetchOk(url);
  const into = Number.isSafeInteger(expectedBytes) && expectedBytes > 0 && expectedBytes < 2 ** 32 ? new Uint8Array(expectedBytes) : null;
  const chunks = []; // past the expected size (or without one): kept, so the integrity check names the real length
  let filled = 0;
  let length = 0;
  const reader = response.body.getReader();
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    if (into && !chunks.length && filled + r.value.byteLength <= into.byteLength) {
      into.set(r.value, filled);
      filled += r.value.byteLength;
    } else {
      chunks.push(r.value);
    }
    length += r.value.byteLength;
    onBytes(r.value.byteLength, { cached: false });
  }
  if (into && filled === length && length === into.byteLength) return into;
  const bytes = new Uint8Array(length);
  if (into) bytes.set(into.subarray(0, filled));
  chunks.reduce((at, c) => (bytes.set(c, at), at + c.byteLength), filled);
  return bytes;
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The refusal of a file whose length is not the manifest's. */
function lengthProblem(file, length, expected) {
  return `${file} has ${length} bytes, the manifest says ${expected}; ` +
    "the file is truncated or replaced: compile or copy the artifact again";
}

/** Why bytes are not the file the manifest describes, or null when they are. */
async function integrityProblem(file, bytes, expected) {
  if (bytes.byteLength !== expected.bytes && expected.bytes !== undefined) return lengthProblem(file, bytes.byteLength, expected.bytes);
  const hash = await sha256Hex(bytes);
  if (hash !== expected.sha256) {
    return `${file} is corrupt (sha256 ${hash.slice(0, 12)}…, manifest ` +
      `${expected.sha256.slice(0, 12)}…): compile or copy the artifact again`;
  }
  return null;
}

/** A file of the artifact, checked against its manifest entry ({bytes, sha256}) before use. */
export async function fetchVerified(base, file, expected, onBytes = () => {}) {
  const url = new URL(file, base).href;
  const cache = await FileCache.open(fileCacheName);
  const cached = await cache?.read(url);
  if (cached) {
    if (!(await integrityProblem(file, cached, expected))) {
      onBytes(cached.byteLength, { cached: true });
      return cached;
    }
    await cache.remove(url); // damaged in storage: download it again
  }
  const bytes = cache ? await cache.download(url, onBytes) : await fetchBytes(url, onBytes, expected.bytes);
  const problem = await integrityProblem(file, bytes, expected);
  if (problem) {
    await cache?.remove(url); // never resume from, or keep, bad bytes
    throw new IntegrityError(problem);
  }
  try {
    await cache?.store(url, bytes);
  } catch {
    // storage is full: the model still loads, it is only downloaded again next time
  }
  return bytes;
}

/** Where a relative artifact URL starts: the page, or outside a page (Deno) the working directory. */
function baseHref() {
  if (globalThis.location?.href) return location.href;
  return globalThis.Deno ? `file://${Deno.cwd()}/` : undefined;
}

export async function fetchManifest(url) {
  const base = new URL(url.endsWith("/") ? url : url + "/", baseHref());
  const bytes = await fetchBytes(new URL("manifest.json", base).href);
  const manifest = JSON.parse(new TextDecoder().decode(bytes));
  if (manifest.format !== FORMAT) {
    throw new ArtifactFormatError(`${base}manifest.json is not a webrt artifact (format ${manifest.format})`);
  }
  if (manifest.format_version !== FORMAT_VERSION) {
    throw new ArtifactFormatError(`artifact format version ${manifest.format_version} cannot be loaded by ` +
      `this shell (reads version ${FORMAT_VERSION}); recompile it with a matching webrt ` +
      `(it was made by webrt ${manifest.created_by?.webrt})`);
  }
  return { base, manifest };
}

/** Download progress over all shards, in bytes as they arrive; `cached`: those the file cache gave. */
function shardProgress(manifest, onProgress) {
  const total = manifest.weights.shards.reduce((sum, s) => sum + s.bytes, 0);
  let loaded = 0;
  let cached = 0;
  let reported = 0;
  return (n, from) => {
    loaded += n;
    if (from.cached) cached += n;
    if (loaded - reported >= PROGRESS_STEP || loaded === total) {
      reported = loaded;
      onProgress({ stage: "download", loaded, total, cached });
    }
  };
}

/** job(index, shard) for every shard, SHARDS_IN_FLIGHT at a time. */
async function eachShard(manifest, job) {
  const shards = manifest.weights.shards;
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < shards.length; index = next++) await job(index, shards[index]);
  };
  await Promise.all(Array.from({ length: Math.min(SHARDS_IN_FLIGHT, shards.length) }, worker));
}

/**
 * Fetch the weight shards, SHARDS_IN_FLIGHT at a time, with download progress; onShard(index,
 * bytes) gets each one once it is verified.
 */
export async function fetchShards(base, manifest, onShard, onProgress = () => {}) {
  const onBytes = shardProgress(manifest, onProgress);
  await eachShard(manifest, async (index, shard) => onShard(index, await fetchVerified(base, shard.file, shard, onBytes)));
}

/**
 * Stream the weight shards, SHARDS_IN_FLIGHT at a time: onBlock(index, offset, bytes) gets each
 * block of shard `index` once it matches the manifest's hash for it (`blocks`, docs/ARTIFACT.md),
 * in order; `bytes` is reused once onBlock returns, so copy it. The page holds one block per
 * download where a whole shard is as large as its largest tensor: 80 MiB for each half of Gemma 3's
 * embedding, two of which in flight had set the page's peak (bench/gemma3_wllama.md). With the file
 * cache on, or an artifact without block hashes, shards are fetched and checked whole, then
 * handed on in blocks.
 */
export async function streamShards(base, manifest, onBlock, onProgress = () => {}) {
  const onBytes = shardProgress(manifest, onProgress);
  const blockBytes = manifest.weights.block_bytes;
  await eachShard(manifest, async (index, shard) => {
    if (blockBytes && shard.blocks && !fileCacheName) {
      await streamVerified(new URL(shard.file, base).href, shard, blockBytes, (offset, bytes) => onBlock(index, offset, bytes), onBytes);
      await askForGarbageCollection(); // a download's small garbage: ~45 MiB over Gemma 3's 262 MiB
      return;
    }
    const bytes = await fetchVerified(base, shard.file, shard, onBytes);
    const step = blockBytes || bytes.byteLength;
    for (let at = 0; at < bytes.byteLength; at += step) onBlock(index, at, bytes.subarray(at, at + step));
    releaseBytes(bytes);
  });
}

/**
 * One shard's body read into a single block buffer (a BYOB reader fills it in place; otherwise
 * the chunks are copied in), each full block checked against its hash before onBlock(offset,
 * bytes) sees it. A shard longer or shorter than the manifest says is refused with its real
 * length, as a whole download is.
 */
async function streamVerified(url, shard, blockBytes, onBlock, onBytes) {
  const body = (await fetchOk(url)).body;
  let byob = null;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    // not a byte stream here: chunks are copied into the block instead
  }
  const reader = byob ?? body.getReader();
  let block = new Uint8Array(blockBytes);
  let pending = new Uint8Array(0); // the default reader's chunk, not yet copied
  let filled = 0;
  let length = 0;
  let index = 0;
  const blockEnd = () => (index < shard.blocks.length ? Math.min(blockBytes, shard.bytes - index * blockBytes) : blockBytes);
  // up to `room` more bytes into block[filled...]; 0 at the end of the body
  const read = async (room) => {
    if (byob) {
      const { value, done } = await byob.read(new Uint8Array(block.buffer, filled, room));
      if (value) block = new Uint8Array(value.buffer); // the read hands the same memory back
      return done ? 0 : value.byteLength;
    }
    if (!pending.byteLength) {
      const { value, done } = await reader.read();
      if (done) return 0;
      pending = value;
    }
    const n = Math.min(room, pending.byteLength);
    block.set(pending.subarray(0, n), filled);
    pending = pending.subarray(n);
    return n;
  };
  for (let n = await read(blockEnd()); n > 0; n = await read(blockEnd() - filled)) {
    filled += n;
    length += n;
    onBytes(n, { cached: false });
    if (filled < blockEnd()) continue;
    if (index < shard.blocks.length) { // past the manifest's length the bytes are only counted
      const bytes = block.subarray(0, filled);
      const hash = await sha256Hex(bytes);
      if (hash !== shard.blocks[index]) {
        await reader.cancel();
        throw new IntegrityError(`${shard.file} is corrupt (block ${index + 1} of ${shard.blocks.length}: sha256 ` +
          `${hash.slice(0, 12)}…, manifest ${shard.blocks[index].slice(0, 12)}…): compile or copy the artifact again`);
      }
      onBlock(index * blockBytes, bytes);
    }
    index += 1;
    filled = 0;
  }
  if (length !== shard.bytes) throw new IntegrityError(lengthProblem(shard.file, length, shard.bytes));
}

/**
 * Fetch the shards, then the chosen backend's kernels. Returns {kernels: {name: wgsl} (webgpu) or
 * {wasm: bytes} (wasm: the build record `wasmBuild` picks), weights: {name: {bytes, shape, dtype}}}.
 */
export async function fetchArtifact(base, manifest, onProgress = () => {}, backend = "webgpu", wasmBuild = manifest.wasm) {
  const shards = [];
  await fetchShards(base, manifest, (index, bytes) => { shards[index] = bytes; }, onProgress);
  const decoder = new TextDecoder();
  const kernels = backend === "wasm"
    ? { wasm: await fetchVerified(base, wasmBuild.file, wasmBuild) }
    : Object.fromEntries(await Promise.all(Object.entries(manifest.kernels).map(async ([name, k]) =>
      [name, decoder.decode(await fetchVerified(base, k.file, k))])));
  const weights = {};
  for (const t of manifest.weights.tensors) {
    weights[t.name] = { bytes: shards[t.shard].subarray(t.offset, t.offset + t.bytes), shape: t.shape, dtype: t.dtype };
  }
  return { kernels, weights };
}
