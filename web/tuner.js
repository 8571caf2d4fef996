// The schedule tuner: picks, per function, the fastest of the compile stage's schedule candidates
// (webrt/compile/tuning.py) on this device, and remembers the winners.
//
// A tuning record is valid for one device key (adapter info + limits) and one candidate space (the
// manifest's tuning.space hash). Records live in IndexedDB; the artifact may also ship a tuning DB
// (manifest tuning.db, written by `webrt tune` or `webrt compile --tuning-db`). With stored
// winners, loading times nothing.
//
// Tuning runs in situ: an entry (decode, then prefill at a size bucket) is walked dispatch by
// dispatch on the real weights and activations. At the first call of each function with
// candidates, every candidate runs on that call's buffers: its output must match the default's
// before it is timed; then rounds of interleaved timings, a median per candidate, and a win only
// when it beats the default by more than the noise tolerance.

import { artifactContextWindow } from "./context_window.js";
import { DeviceError, InputError } from "./errors.js";
import { greedyInputs } from "./generator.js";
import { fetchVerified } from "./loader.js";
import { evaluateLaunches } from "./plan_executor.js";
import { bucket, tensorBytes } from "./plan_inputs.js";
import { evaluateShape } from "./shape_expr.js";
import { bindGroupFor, createBuffer, createPipelines, trackedBuffer, writePods } from "./webgpu_backend.js";

export const TUNING_FORMAT = "webrt-tuning";
export const DEFAULT_BUDGET_S = 30;
const NOISE = 0.03;             // a candidate must beat the default by more than 3%
const TOLERANCE = 1e-3;         // max abs error relative to max(1, max |default output|)
const ROUNDS = 5;               // timing rounds per function (fewer when the budget runs out)
const MIN_ROUNDS = 2;           // medians from fewer samples are not trusted
const PIPELINE_TIMEOUT_MS = 15_000;
const MIN_MEASURE_MS = 4;       // repeat a dispatch within one submission until this long
const now = () => performance.now();

/** Normalize the engine option: false | "auto" | true | {budget_s, entries, force}. */
export function tuningOptions(option = "auto") {
  if (option === false || option === "off") return null;
  if (option === "auto" || option === undefined || option === null) return { time: false };
  const o = option === true || option === "on" ? {} : option;
  if (typeof o !== "object") throw new InputError(`tuning must be false, "auto", true or {budget_s}, got ${JSON.stringify(option)}`);
  const budget = o.budget_s ?? o.budgetS ?? DEFAULT_BUDGET_S;
  if (!(budget >= 0)) throw new InputError(`tuning.budget_s must be a number >= 0, got ${JSON.stringify(budget)}`);
  return { time: true, budgetMs: budget * 1000, entries: o.entries ?? ["decode", "prefill:64"], force: Boolean(o.force) };
}

/** The device half of the key: what makes schedules rank differently. */
export function webgpuDeviceKey(adapter, device) {
  const limits = ["maxComputeInvocationsPerWorkgroup", "maxComputeWorkgroupSizeX", "maxComputeWorkgroupStorageSize",
    "maxStorageBufferBindingSize"].map((n) => `${n}=${device.limits[n]}`);
  return ["webgpu", adapter.vendor, adapter.architecture, adapter.description, ...limits].join("|");
}

export function wasmDeviceKey(build, threads) {
  return ["wasm", build, `threads=${threads}`, globalThis.navigator?.userAgent ?? ""].join("|");
}

// ---- storage: IndexedDB records, the artifact's baked DB, export / import --------------------

const IDB_NAME = "webrt-tuning";
const STORE = "records";

function openIDB() {
  if (!globalThis.indexedDB) return Promise.resolve(null);
  return new Promise((resolve) => {
    const req = indexedDB.open(IDB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => resolve(null); // storage refused (private mode): tuning still works, unremembered
  });
}

async function idb(mode, fn) {
  const db = await openIDB();
  if (!db) return null;
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const req = fn(tx.objectStore(STORE));
    tx.oncomplete = () => { db.close(); resolve(req?.result ?? null); };
    tx.onerror = () => { db.close(); reject(new DeviceError(`IndexedDB: ${tx.error?.message}`)); };
  });
}

const recordKey = (record) => `${record.device}|${record.space}`;

export async function storeRecord(record) {
  await idb("readwrite", (store) => store.put(record, recordKey(record)));
}

async function storedRecord(device, space) {
  return idb("readonly", (store) => store.get(`${device}|${space}`));
}

/** Every record in this browser's tuning store, as a tuning DB (JSON-serializable). */
export async function exportTuningDB() {
  const records = (await idb("readonly", (store) => store.getAll())) ?? [];
  return { format: TUNING_FORMAT, version: 1, records };
}

/** Add a tuning DB's records to this browser's store; returns how many. */
export async function importTuningDB(db) {
  if (db?.format !== TUNING_FORMAT || !Array.isArray(db.records)) throw new DeviceError(`not a webrt tuning DB (format ${db?.format})`);
  for (const record of db.records) await storeRecord(record);
  return db.records.length;
}

/** The winners for this device and artifact: IndexedDB first, then the artifact's own DB. */
export async function findRecord(base, manifest, device) {
  const space = manifest.tuning?.space;
  if (!space) return null;
  const stored = await storedRecord(device, space).catch(() => null);
  if (stored) return { ...stored, source: "indexeddb" };
  const file = manifest.tuning.db && manifest.files?.find((f) => f.file === manifest.tuning.db);
  if (!file) return null;
  const db = JSON.parse(new TextDecoder().decode(await fetchVerified(base, file.file, file)));
  const record = db.records?.find((r) => r.device === device && r.space === space);
  return record ? { ...record, source: "artifact" } : null;
}

// ---- applying winners --------------------------------------------------------------------------

/** The manifest with each winning candidate's launches in place of its function's default, and
 * only the kernels those launches use (candidates' kernels load only when they won). */
export function applyWinners(manifest, winners = {}) {
  const functions = {};
  for (const [name, recipe] of Object.entries(manifest.functions)) {
    const chosen = winners[name] && recipe.candidates?.find((c) => c.id === winners[name]);
    functions[name] = chosen ? { ...recipe, scratch: chosen.scratch, launches: chosen.launches } : recipe;
  }
  const used = new Set(Object.values(functions).flatMap((f) => f.launches.map((l) => l.kernel)));
  const kernels = Object.fromEntries(Object.entries(manifest.kernels).filter(([name]) => used.has(name)));
  return { ...manifest, functions, kernels };
}

// ---- WebGPU tuning -----------------------------------------------------------------------------

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([promise, new Promise((_, reject) => { timer = setTimeout(() => reject(new DeviceError(`${what} timed out after ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(timer));
}

/** Submit dispatches (repeated `reps` times) in one pass and wait for the device; returns ms per rep. */
async function runDispatches(device, dispatches, reps = 1) {
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  for (let r = 0; r < reps; r++) {
    for (const d of dispatches) {
      pass.setPipeline(d.launch.pipeline);
      pass.setBindGroup(0, d.launch.bindGroup);
      pass.dispatchWorkgroups(d.folded[0], d.folded[1], d.folded[2]);
    }
  }
  pass.end();
  const t0 = now();
  device.queue.submit([encoder.finish()]);
  await device.queue.onSubmittedWorkDone();
  return (now() - t0) / reps;
}

async function readRegions(device, regions) {
  const total = regions.reduce((s, r) => s + r.size, 0);
  const staging = device.createBuffer({ size: total, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder();
  let at = 0;
  for (const r of regions) {
    encoder.copyBufferToBuffer(r.buffer, r.offset, staging, at, r.size);
    at += r.size;
  }
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const copy = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return copy;
}

function clearRegions(device, regions) {
  const encoder = device.createCommandEncoder();
  for (const r of regions) encoder.clearBuffer(r.buffer, r.offset, r.size);
  device.queue.submit([encoder.finish()]);
}

function maxError(got, ref) {
  let err = 0;
  let scale = 1;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    err = Number.isNaN(d) ? Infinity : Math.max(err, d);
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return err / scale;
}

/**
 * Inputs that make an entry run at real shapes: decode at position 64 of the cache, prefill of n
 * tokens, within the page's window (the KV cache has rows for contextWindow positions only).
 */
function entryInputs(manifest, spec, contextWindow = artifactContextWindow(manifest)) {
  const [entry, size] = spec.split(":");
  const ctx = contextWindow;
  const vocab = manifest.model.config.vocab_size;
  const n = entry === "decode" ? 1 : Math.min(Number(size || 64), ctx);
  const offset = entry === "decode" ? Math.min(64, ctx - 1) : 0;
  const ids = Array.from({ length: n }, (_, i) => (i * 7919 + 13) % vocab);
  return { entry, inputs: greedyInputs(vocab, ids, offset) };
}

/**
 * Tune on WebGPU. ctx: {device, base, manifest (the full one), executor (PlanExecutor), pipelines
 * (name -> compiled, shared with the executor; winners' pipelines are added)}. Returns
 * {winners, functions: {name: {default_ms, best_ms, winner, timed, rejected}}, candidates_timed, seconds}.
 */
export async function tuneWebGPU(ctx, options, onProgress = () => {}) {
  const { device, manifest, executor, pipelines } = ctx;
  // a resumed run (after a lost device) keeps its start, its finished functions and its count
  const t0 = options.startedAt ?? now();
  const deadline = t0 + options.budgetMs;
  const report = { winners: {}, functions: { ...options.done }, candidates_timed: options.timedBefore ?? 0, seconds: 0 };
  const entries = manifest.entries;
  ctx.lost = false;
  device.lost.then(() => { ctx.lost = true; });
  ctx.inFlight = new Set();
  ctx.exclude = options.exclude ?? [];
  try {
    await tuneEntries(ctx, options, onProgress, { entries, deadline, report });
  } catch (err) {
    await new Promise((resolve) => setTimeout(resolve, 0)); // device.lost resolves after the failure
    if (!ctx.lost) throw err;
    throw new TuningDeviceLost(report, [...ctx.inFlight], t0);
  }
  for (const [name, r] of Object.entries(report.functions)) if (r.winner) report.winners[name] = r.winner;
  report.seconds = (now() - t0) / 1000;
  const tuned = applyWinners(manifest, report.winners);
  // winners found before a lost device have no pipelines on this one yet
  await ensurePipelines(ctx, Object.keys(tuned.kernels));
  executor.useManifest(tuned, pipelines);
  return report;
}

/** Throw while the candidate that ran last is still marked in flight, when the device is gone:
 * a lost device reports itself a task later, and must not be blamed on the next candidate. */
async function stillAlive(ctx) {
  await new Promise((resolve) => setTimeout(resolve, 0));
  if (ctx.lost) throw new DeviceError("the device was lost");
}

async function ensurePipelines({ device, base, manifest, pipelines }, names) {
  const missing = names.filter((n) => !pipelines[n]);
  const sources = Object.fromEntries(await Promise.all(missing.map(async (n) =>
    [n, new TextDecoder().decode(await fetchVerified(base, manifest.kernels[n].file, manifest.kernels[n]))])));
  Object.assign(pipelines, await createPipelines(device, Object.fromEntries(missing.map((n) => [n, manifest.kernels[n]])), sources));
}

/** The device was lost while candidates (`culprits`: "function:id") ran; the caller recreates the
 * device and resumes with them excluded (tuningOptions `exclude`, `done`). */
export class TuningDeviceLost extends DeviceError {
  constructor(report, culprits, startedAt) {
    super(`the WebGPU device was lost while tuning ${culprits.join(", ")}`);
    this.report = report;
    this.culprits = culprits;
    this.startedAt = startedAt;
  }
}

async function tuneEntries(ctx, options, onProgress, { entries, deadline, report }) {
  const { device, manifest, executor } = ctx;
  for (const spec of options.entries) {
    const { entry, inputs } = entryInputs(manifest, spec, ctx.contextWindow);
    if (!entries[entry] || now() >= deadline) continue;
    const { plan, env, program, dispatches } = executor.dispatchesOf(entry, inputs);
    // the first call of each function with candidates, not tuned yet (prefill shares lm_head with decode)
    const targets = [];
    const seen = new Set(Object.keys(report.functions));
    plan.steps.forEach((step, index) => {
      if (step.op === "call" && manifest.functions[step.func].candidates?.length && !seen.has(step.func)) {
        seen.add(step.func);
        targets.push(index);
      }
    });
    let done = 0; // dispatches already run
    for (const [i, index] of targets.entries()) {
      if (now() >= deadline) break;
      const prefix = [];
      while (done < dispatches.length && dispatches[done].launch.step < index) prefix.push(dispatches[done++]);
      if (prefix.length) await runDispatches(device, prefix);
      const own = [];
      while (done < dispatches.length && dispatches[done].launch.step === index) own.push(dispatches[done++]);
      const step = plan.steps[index];
      // each remaining function gets an equal share of what is left of the budget
      const share = (deadline - now()) / (targets.length - i);
      onProgress({ stage: "tuning", loaded: Object.keys(report.functions).length, total: null, func: step.func, entry: spec });
      report.functions[step.func] = await tuneStep(ctx, { step, env, program, own, until: now() + share, deadline }, report);
      await runDispatches(device, own); // the default's output feeds the next steps
    }
  }
}

async function tuneStep(ctx, { step, env, program, own, until, deadline }, report) {
  const { device, base, manifest, executor, pipelines } = ctx;
  const func = manifest.functions[step.func];
  const result = { default_ms: null, best_ms: null, winner: null, timed: 0, rejected: {} };
  // the step's outputs: the parameters its kernels write
  const written = new Set();
  for (const launch of func.launches) {
    const kernel = manifest.kernels[launch.kernel];
    for (const b of launch.buffers) {
      if (b.param !== undefined && kernel.storage_bindings.find((s) => s.binding === b.binding)?.access === "read_write") written.add(b.param);
    }
  }
  const tensorOf = (param) => program.tensors[step.args[func.params.slice(0, param).filter((p) => !p.scalar).length]];
  const regions = [...written].map((param) => {
    const t = tensorOf(param);
    return { buffer: t.buffer, offset: t.offset, size: Math.ceil(tensorBytes(evaluateShape(t.shape, env), t.dtype) / 4) * 4 };
  });
  if (regions.some((r) => r.size === 0)) return result;
  const baseline = await runDispatches(device, own);
  const reference = await readRegions(device, regions);
  const reps = Math.max(1, Math.min(50, Math.ceil(MIN_MEASURE_MS / Math.max(baseline, 0.01))));

  // candidates: fetch and compile their kernels in parallel, each with a timeout
  const made = [];
  const owned = [];
  // rounds of every candidate must fit this function's share: keep the first ones (GPU_SPACE
  // lists the likeliest first) when the step is slow
  const affordable = Math.max(1, Math.floor((until - now()) / (baseline * (MIN_ROUNDS + 1))) - 1);
  const excluded = new Set(ctx.exclude ?? []);
  const usable = func.candidates.filter((c) => {
    if (!excluded.has(`${step.func}:${c.id}`)) return true;
    result.rejected[c.id] = "the device was lost while it ran";
    return false;
  });
  const tried = usable.slice(0, affordable);
  for (const c of usable.slice(affordable)) result.rejected[c.id] = "not tried: out of tuning budget";
  const mark = (c, on) => (on ? ctx.inFlight.add(`${step.func}:${c.id}`) : ctx.inFlight.delete(`${step.func}:${c.id}`));
  await Promise.all(tried.map(async (c) => {
    mark(c, true);
    try {
      await withTimeout(ensurePipelines(ctx, [...new Set(c.launches.map((l) => l.kernel))]),
        PIPELINE_TIMEOUT_MS, `pipeline creation of ${c.id}`);
      await stillAlive(ctx);
      made.push({ c, dispatches: candidateDispatches(device, executor, pipelines, step, program, env, c, owned) });
      mark(c, false);
    } catch (err) {
      result.rejected[c.id] = err.message;
      // left in flight: if the device is now lost, this candidate is the suspect
    }
  }));
  // a candidate must compute what the default computes before its speed counts
  const alive = [];
  for (const m of made) {
    // a check costs about one default run: none starts that would end past this function's share
    if (now() + baseline >= Math.min(until, deadline)) {
      result.rejected[m.c.id] = "not checked: out of tuning budget";
      continue;
    }
    clearRegions(device, regions);
    mark(m.c, true);
    await runDispatches(device, m.dispatches);
    await stillAlive(ctx);
    const err = maxError(await readRegions(device, regions), reference);
    mark(m.c, false);
    if (err <= TOLERANCE) alive.push({ ...m, times: [] });
    else result.rejected[m.c.id] = `wrong output (max error ${err.toExponential(2)} relative)`;
  }
  const defaults = [];
  for (let round = 0; round < ROUNDS && alive.length; round++) {
    // past this function's share, stop after the rounds a median needs; past the whole budget, at once
    if ((round >= MIN_ROUNDS && now() >= until) || now() >= deadline) break;
    defaults.push(await runDispatches(device, own, reps));
    for (const a of alive) {
      mark(a.c, true);
      a.times.push(await runDispatches(device, a.dispatches, reps));
      await stillAlive(ctx);
      mark(a.c, false);
      if (a.times.length === 1) report.candidates_timed += 1;
    }
    if (round === 0) {
      // successive halving: far slower candidates are not worth more rounds
      const best = Math.min(defaults[0], ...alive.map((a) => a.times[0]));
      alive.splice(0, alive.length, ...alive.filter((a) => a.times[0] <= 1.5 * best));
    }
    if (now() >= until && round + 1 >= MIN_ROUNDS) break;
  }
  for (const buffer of owned) buffer.destroy();
  result.timed = made.length;
  if (!defaults.length) return result;
  result.default_ms = median(defaults);
  result.best_ms = result.default_ms;
  for (const a of alive) {
    if (a.times.length < MIN_ROUNDS) continue;
    const m = median(a.times);
    if (m < result.best_ms && m < result.default_ms * (1 - NOISE)) {
      result.best_ms = m;
      result.winner = a.c.id;
    }
  }
  // the step's output goes back to the default's for the steps after it
  return result;
}

/** A candidate's dispatches on the step's own buffers, with a uniform buffer of its own. */
function candidateDispatches(device, executor, pipelines, step, program, env, candidate, owned) {
  const allocate = (bytes, label) => {
    const buffer = createBuffer(device, bytes, label);
    owned.push(buffer);
    return buffer;
  };
  const recipe = { ...executor.manifest.functions[step.func], scratch: candidate.scratch, launches: candidate.launches };
  const launches = executor.launchesOf(step, program.tensors, bucket(env), allocate, recipe);
  const uniform = trackedBuffer(device, { label: `${step.func}.${candidate.id}.pods`, size: Math.max(1, launches.length) * 256,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  owned.push(uniform);
  launches.forEach((launch, i) => {
    const compiled = pipelines[launch.kernel];
    launch.slot = i;
    launch.pipeline = compiled.pipeline;
    launch.podFields = compiled.kernel.pod_binding === null ? [] : compiled.kernel.pod_fields;
    launch.bindGroup = bindGroupFor(device, compiled, launch.buffers, uniform, i);
  });
  const dispatches = evaluateLaunches(launches, env);
  writePods(device, uniform, dispatches);
  return dispatches;
}

// ---- wasm tuning -------------------------------------------------------------------------------

/**
 * The argument lists a wasm candidate is timed with: this call's, then one per other call of the same
 * function (each layer) with that call's weights and this call's activations and outputs. A decode
 * streams every layer's weights once, far more bytes than the caches hold; timing one layer's weights
 * over and over would run from cache and favour schedules that lose in the real run (a GEMV that
 * interleaves four weight rows is ~1.9x slower from memory, yet as fast from cache). Only weights
 * and state the function reads are swapped (weights: pointers of the executor's bound tensors).
 */
function weightSites(call, calls, written, weights) {
  const swappable = (a, i) => typeof a === "object" && !written.includes(i) && weights.has(a.ptr);
  const others = calls.filter((c) => c.func === call.func && c !== call)
    .map((c) => call.args.map((a, i) => (swappable(a, i) && swappable(c.args[i], i) ? c.args[i] : a)));
  return [call.args, ...others];
}

/** The byte regions (in wasm memory) of the parameters a function writes: its outputs. */
function writtenParams(manifest, func) {
  const written = new Set();
  for (const launch of func.launches) {
    const kernel = manifest.kernels[launch.kernel];
    for (const b of launch.buffers) {
      if (b.param !== undefined && kernel.storage_bindings.find((s) => s.binding === b.binding)?.access === "read_write") written.add(b.param);
    }
  }
  return [...written];
}

/**
 * Tune on the wasm kernels: candidates are extra exports `<function>__<id>` of the same module
 * (manifest functions[f].wasm_candidates). ctx: {kernels (WasmKernels), manifest, executor
 * (WasmExecutor)}. Returns the same report as tuneWebGPU.
 */
export async function tuneWasm(ctx, options, onProgress = () => {}) {
  const { kernels, manifest, executor } = ctx;
  const t0 = now();
  const deadline = t0 + options.budgetMs;
  const report = { winners: {}, functions: {}, candidates_timed: 0, seconds: 0 };
  // sites: argument lists, called in turn across timings (see weightSites), so consecutive calls
  // never reuse the weights they just read
  let turn = 0;
  const time = (name, sites, reps) => {
    const start = now();
    for (let r = 0; r < reps; r++) kernels.call(name, sites[turn++ % sites.length]);
    return (now() - start) / reps;
  };
  const weights = new Set(Object.values(executor.bound).map((t) => t.ptr));
  for (const spec of options.entries) {
    const { entry, inputs } = entryInputs(manifest, spec, ctx.contextWindow);
    if (!manifest.entries[entry] || now() >= deadline) continue;
    const { calls } = executor.callsOf(entry, inputs);
    const targets = calls.filter((c, i) => manifest.functions[c.func].wasm_candidates?.length && !(c.func in report.functions)
      && calls.findIndex((d) => d.func === c.func) === i);
    let left = targets.length;
    for (const call of calls) {
      if (now() >= deadline) break;
      if (!targets.includes(call)) {
        kernels.call(call.func, call.args);
        continue;
      }
      const until = now() + (deadline - now()) / left--;
      onProgress({ stage: "tuning", loaded: Object.keys(report.functions).length, total: null, func: call.func, entry: spec });
      await new Promise((resolve) => setTimeout(resolve, 0)); // let the page breathe between functions
      const func = manifest.functions[call.func];
      const result = { default_ms: null, best_ms: null, winner: null, timed: 0, rejected: {} };
      report.functions[call.func] = result;
      const written = writtenParams(manifest, func);
      const outputs = written.map((p) => call.args[p]).filter((a) => typeof a === "object");
      const read = () => outputs.map((t) => new Float32Array(kernels.bytes(t.ptr, tensorBytes(t.shape, t.dtype)).slice().buffer));
      const sites = weightSites(call, calls, written, weights);
      const baseline = time(call.func, [call.args], 1);
      const reference = read();
      const reps = Math.max(1, Math.min(200, Math.ceil(MIN_MEASURE_MS / Math.max(baseline, 0.01))));
      const alive = [];
      for (const c of func.wasm_candidates) {
        const name = `${call.func}__${c.id}`;
        if (!kernels.x[`__tvm_ffi_${name}`]) continue; // this build has no variants (scalar)
        try {
          outputs.forEach((t) => kernels.zero(t.ptr, tensorBytes(t.shape, t.dtype)));
          kernels.call(name, call.args);
          const err = Math.max(...read().map((got, i) => maxError(got, reference[i])));
          if (err <= TOLERANCE) alive.push({ c, name, times: [] });
          else result.rejected[c.id] = `wrong output (max error ${err.toExponential(2)} relative)`;
        } catch (err) {
          result.rejected[c.id] = err.message;
        }
      }
      result.timed = alive.length;
      const defaults = [];
      for (let round = 0; round < ROUNDS && alive.length; round++) {
        if ((round >= MIN_ROUNDS && now() >= until) || now() >= deadline) break;
        defaults.push(time(call.func, sites, reps));
        for (const a of alive) {
          a.times.push(time(a.name, sites, reps));
          if (a.times.length === 1) report.candidates_timed += 1;
        }
      }
      kernels.call(call.func, call.args); // the default's output feeds the next calls
      if (!defaults.length) continue;
      result.default_ms = median(defaults);
      result.best_ms = result.default_ms;
      for (const a of alive) {
        if (a.times.length < MIN_ROUNDS) continue;
        const m = median(a.times);
        if (m < result.best_ms && m < result.default_ms * (1 - NOISE)) {
          result.best_ms = m;
          result.winner = a.c.id;
        }
      }
    }
  }
  for (const [name, r] of Object.entries(report.functions)) if (r.winner) report.winners[name] = r.winner;
  report.seconds = (now() - t0) / 1000;
  executor.useWinners(report.winners);
  return report;
}
