// Fetches an artifact (docs/ARTIFACT.md): the manifest, the kernels and the weight shards, each
// checked against the SHA-256 the manifest records before anything is used. With a file cache
// (useFileCache), files come from the Cache API when they are there, and downloads resume.

import { ArtifactFormatError, FetchError, IntegrityError } from "./errors.js";
import { FileCache } from "./file_cache.js";

export const FORMAT = "webrt-artifact";
export const FORMAT_VERSION = 1;
const PROGRESS_STEP = 1 << 20; // bytes between download progress reports
const SHARDS_IN_FLIGHT = 2; // parallel downloads, yet the page never holds many shards at once

let fileCacheName = null;

/**
 * Keep the artifact files this context (page or worker) loads in the Cache API under `name`
 * (null: off), so a reload downloads nothing again and a cut-off download resumes (file_cache.js).
 */
export function useFileCache(name) {
  fileCacheName = name ?? null;
}

/**
 * The body of url; onBytes(n, {cached: false}) hears about each chunk as it arrives. With its size
 * known (a manifest entry's bytes), chunks go straight into one buffer of that size: collecting
 * them and then joining held every weight shard twice while it downloaded (bench/gemma3_wllama.md).
 */
async function fetchBytes(url, onBytes = () => {}, expectedBytes = undefined) {
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new FetchError(`could not fetch ${url} (${err.message}); check that the artifact is served`);
  }
  if (!response.ok) {
    throw new FetchError(`fetching ${url} gave HTTP ${response.status}; check that the artifact is complete`);
  }
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

/** Why bytes are not the file the manifest describes, or null when they are. */
async function integrityProblem(file, bytes, expected) {
  if (bytes.byteLength !== expected.bytes && expected.bytes !== undefined) {
    return `${file} has ${bytes.byteLength} bytes, the manifest says ${expected.bytes}; ` +
      "the file is truncated or replaced: compile or copy the artifact again";
  }
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

/**
 * Fetch the weight shards, SHARDS_IN_FLIGHT at a time, with download progress; onShard(index,
 * bytes) gets each one once it is verified. A caller that copies a shard into place and drops it
 * (the wasm backend) holds at most that many shards beside the weights: with every shard in flight
 * at once, each download's buffer was allocated at its start and the page's peak held the weights
 * twice anyway (bench/gemma3_wllama.md).
 */
export async function fetchShards(base, manifest, onShard, onProgress = () => {}) {
  const shardInfo = manifest.weights.shards;
  const total = shardInfo.reduce((sum, s) => sum + s.bytes, 0);
  // progress in bytes as they arrive; `cached` counts those that came from the file cache
  let loaded = 0;
  let cached = 0;
  let reported = 0;
  const onBytes = (n, from) => {
    loaded += n;
    if (from.cached) cached += n;
    if (loaded - reported >= PROGRESS_STEP || loaded === total) {
      reported = loaded;
      onProgress({ stage: "download", loaded, total, cached });
    }
  };
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < shardInfo.length; index = next++) {
      const shard = shardInfo[index];
      await onShard(index, await fetchVerified(base, shard.file, shard, onBytes));
    }
  };
  await Promise.all(Array.from({ length: Math.min(SHARDS_IN_FLIGHT, shardInfo.length) }, worker));
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
