// What both executors share: checking an entry's inputs against its plan, binding the shape
// variables, and sizes.

import { InputError } from "./errors.js";
import { evaluateShape } from "./shape_expr.js";

const DTYPE_BYTES = { float32: 4, int32: 4, uint32: 4, float16: 2, int8: 1, uint8: 1 };
export const TYPED_ARRAY = { float32: Float32Array, int32: Int32Array, uint32: Uint32Array };

export const product = (shape) => shape.reduce((a, b) => a * b, 1);
export const tensorBytes = (shape, dtype) => product(shape) * DTYPE_BYTES[dtype];

/**
 * Every shape variable that sizes storage (`sizing`, default all) rounded up to a power of two: the
 * sizes a prepared program holds. The others are 0: they never size anything.
 */
export function bucket(env, sizing = null) {
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, sizing && !sizing.has(k) ? 0 : v <= 1 ? v : 2 ** Math.ceil(Math.log2(v))]));
}

/**
 * The shape variables that size a plan's storage: those named in its tensors' shapes and storage
 * sizes, and in the scalars of calls whose functions take scratch buffers. The others (the
 * sampling seed, a new random number each step) stay out of a program's key, or every step
 * would prepare and evict programs.
 */
export function sizingVars(plan, functions) {
  const text = JSON.stringify([plan.inputs.map((i) => i.shape ?? null), plan.steps.filter((s) => s.op !== "call"),
    plan.steps.filter((s) => s.op === "call" && functions[s.func]?.scratch?.length).map((s) => s.scalars)]);
  return new Set(Object.keys(plan.shape_vars).filter((name) => text.includes(JSON.stringify(name))));
}

/**
 * Prepared programs by entry and size bucket, the least recently used released beyond `size`:
 * prepare(plan, capacity) builds one, release(program) frees its memory; functions() gives the
 * manifest's functions (their scratch sizes count as sizing).
 */
export class ProgramCache {
  constructor(prepare, release, functions, size = 6) {
    this.prepare = prepare;
    this.release = release;
    this.functions = functions;
    this.size = size;
    this.programs = new Map();
    this.sizing = new WeakMap(); // plan -> its sizing variables
    this.prepared = 0; // programs built so far (a test counts them)
  }

  get(entryName, plan, env) {
    if (!this.sizing.has(plan)) this.sizing.set(plan, sizingVars(plan, this.functions()));
    const capacity = bucket(env, this.sizing.get(plan));
    const key = `${entryName}:${JSON.stringify(capacity)}`;
    let program = this.programs.get(key);
    if (program) {
      this.programs.delete(key); // re-inserted below: Map order is the use order
    } else {
      program = this.prepare(plan, capacity);
      this.prepared += 1;
    }
    this.programs.set(key, program);
    if (this.programs.size > this.size) this.drop(this.programs.keys().next().value);
    return program;
  }

  drop(key) {
    this.release(this.programs.get(key));
    this.programs.delete(key);
  }

  clear() {
    for (const key of [...this.programs.keys()]) this.drop(key);
    this.sizing = new WeakMap(); // other functions (the tuner's winners) may size scratch otherwise
  }
}

/** Check the inputs that are not weights or state (`bound`) and return the shape variables. */
/**
 * Inputs with every `later` input ({data (a stand-in of the right shape), shape, later(inFlight) ->
 * Promise<TypedArray>}) replaced by its value. inFlight tells the producer whether device work runs
 * meanwhile.
 */
export async function resolveLater(inputs, inFlight = false) {
  const out = { ...inputs };
  for (const [name, input] of Object.entries(inputs)) {
    if (input?.later) out[name] = { data: await input.later(inFlight), shape: input.shape };
  }
  return out;
}

export function bindShapeVars(plan, inputs, bound) {
  for (const input of plan.inputs) {
    if (input.name in bound) continue;
    const given = inputs[input.name];
    if (!given) throw new InputError(`entry input ${input.name} is missing`);
    if (input.values) {
      if (!Array.isArray(given.values) || given.values.length !== input.values.length || !given.values.every(Number.isInteger)) {
        throw new InputError(`input ${input.name} must be {values: [${input.values.length} integers]}`);
      }
    } else if (!(given.data instanceof TYPED_ARRAY[input.dtype]) || given.shape?.length !== input.shape.length) {
      throw new InputError(`input ${input.name} must be a ${TYPED_ARRAY[input.dtype].name} of shape ${JSON.stringify(input.shape)}`);
    }
  }
  const env = {};
  for (const [name, where] of Object.entries(plan.shape_vars)) {
    const input = plan.inputs[where.input];
    const given = inputs[input.name] ?? bound[input.name];
    env[name] = input.values ? given.values[where.dim] : given.shape[where.dim];
  }
  for (const input of plan.inputs) {
    if (input.name in bound || input.values) continue;
    const given = inputs[input.name];
    const expected = evaluateShape(input.shape, env);
    if (expected.some((d, i) => d !== given.shape[i]) || given.data.length !== product(expected)) {
      throw new InputError(`input ${input.name} has shape ${JSON.stringify(given.shape)} and ${given.data.length} ` +
        `values, the plan expects ${JSON.stringify(expected)}`);
    }
  }
  return env;
}
