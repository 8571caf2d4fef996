// Fetches an artifact (docs/ARTIFACT.md): the manifest, the kernels and the weight shards, each
// checked against the SHA-256 the manifest records before anything is used.

import { ArtifactFormatError, FetchError, IntegrityError } from "./errors.js";

export const FORMAT = "webrt-artifact";
export const FORMAT_VERSION = 1;

async function fetchBytes(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new FetchError(`could not fetch ${url} (${err.message}); check that the artifact is served`);
  }
  if (!response.ok) {
    throw new FetchError(`fetching ${url} gave HTTP ${response.status}; check that the artifact is complete`);
  }
  return new Uint8Array(await response.arrayBuffer());
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function fetchVerified(base, file, expected) {
  const url = new URL(file, base).href;
  const bytes = await fetchBytes(url);
  if (bytes.byteLength !== expected.bytes && expected.bytes !== undefined) {
    throw new IntegrityError(`${file} has ${bytes.byteLength} bytes, the manifest says ${expected.bytes}; ` +
      "the file is truncated or replaced: compile or copy the artifact again");
  }
  const hash = await sha256Hex(bytes);
  if (hash !== expected.sha256) {
    throw new IntegrityError(`${file} is corrupt (sha256 ${hash.slice(0, 12)}…, manifest ` +
      `${expected.sha256.slice(0, 12)}…): compile or copy the artifact again`);
  }
  return bytes;
}

export async function fetchManifest(url) {
  const base = new URL(url.endsWith("/") ? url : url + "/", location.href);
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
 * Fetch the shards and the chosen backend's kernels in parallel. Returns {kernels: {name: wgsl}
 * (webgpu) or {wasm: bytes} (wasm), weights: {name: {bytes, shape, dtype}}}.
 */
export async function fetchArtifact(base, manifest, onProgress = () => {}, backend = "webgpu") {
  const shardInfo = manifest.weights.shards;
  const total = shardInfo.reduce((sum, s) => sum + s.bytes, 0);
  let loaded = 0;
  const shards = await Promise.all(shardInfo.map(async (shard) => {
    const bytes = await fetchVerified(base, shard.file, shard);
    loaded += bytes.byteLength;
    onProgress({ stage: "download", loaded, total });
    return bytes;
  }));
  const decoder = new TextDecoder();
  const kernels = backend === "wasm"
    ? { wasm: await fetchVerified(base, manifest.wasm.file, manifest.wasm) }
    : Object.fromEntries(await Promise.all(Object.entries(manifest.kernels).map(async ([name, k]) =>
      [name, decoder.decode(await fetchVerified(base, k.file, k))])));
  const weights = {};
  for (const t of manifest.weights.tensors) {
    weights[t.name] = { bytes: shards[t.shard].subarray(t.offset, t.offset + t.bytes), shape: t.shape, dtype: t.dtype };
  }
  return { kernels, weights };
}
