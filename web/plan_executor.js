// Runs an entry's execution plan (docs/ARTIFACT.md, "Plan"): binds shape variables from the actual
// inputs, allocates the planned storage, and turns every call step into kernel dispatches.
// A prepared program is kept per input shape, so repeated runs of one shape only upload and submit.

import { InputError } from "./errors.js";
import { evaluate, evaluateShape } from "./shape_expr.js";
import { createBuffer, encodeDispatches, submit } from "./webgpu_backend.js";

const DTYPE_BYTES = { float32: 4, int32: 4, uint32: 4, float16: 2, int8: 1, uint8: 1 };
const TYPED_ARRAY = { float32: Float32Array, int32: Int32Array, uint32: Uint32Array };
const MAX_PROGRAMS = 4;

function tensorBytes(shape, dtype) {
  return shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
}

/** A tensor is a placed view: {buffer, offset, shape, dtype}. Bindings round the size up to 4 bytes. */
function binding(tensor) {
  return { buffer: tensor.buffer, offset: tensor.offset, size: Math.ceil(tensorBytes(tensor.shape, tensor.dtype) / 4) * 4 };
}

export class PlanExecutor {
  constructor(device, manifest, pipelines, weights) {
    this.device = device;
    this.manifest = manifest;
    this.pipelines = pipelines;
    this.weights = weights; // name -> {buffer, shape, dtype}
    this.programs = new Map();
  }

  /** inputs: {name: {data: TypedArray, shape: number[]}} for every non-weight input of the entry. */
  async run(entryName, inputs) {
    const plan = this.manifest.entries[entryName];
    if (!plan) throw new InputError(`the artifact has no entry ${entryName}; it has ${Object.keys(this.manifest.entries)}`);
    const env = this.bindShapeVars(plan, inputs);
    const key = `${entryName}:${JSON.stringify(env)}`;
    let program = this.programs.get(key);
    if (!program) {
      program = this.prepare(plan, env);
      this.remember(key, program);
    }
    for (const input of plan.inputs) {
      if (input.name in this.weights) continue;
      const data = inputs[input.name].data;
      this.device.queue.writeBuffer(program.tensors[input.id].buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    }
    const output = program.tensors[plan.output];
    const bytes = await submit(this.device, program.encoded, binding(output));
    const Typed = TYPED_ARRAY[output.dtype];
    return { data: new Typed(bytes, 0, output.shape.reduce((a, b) => a * b, 1)), shape: output.shape, dtype: output.dtype };
  }

  bindShapeVars(plan, inputs) {
    const env = {};
    for (const input of plan.inputs) {
      if (input.name in this.weights) continue;
      const given = inputs[input.name];
      if (!given) throw new InputError(`entry input ${input.name} is missing`);
      if (given.shape.length !== input.shape.length) {
        throw new InputError(`input ${input.name} has rank ${given.shape.length}, the plan expects shape ${JSON.stringify(input.shape)}`);
      }
      if (!(given.data instanceof TYPED_ARRAY[input.dtype])) {
        throw new InputError(`input ${input.name} must be a ${TYPED_ARRAY[input.dtype].name}`);
      }
    }
    for (const [name, where] of Object.entries(plan.shape_vars)) {
      env[name] = inputs[plan.inputs[where.input].name].shape[where.dim];
    }
    for (const input of plan.inputs) {
      if (input.name in this.weights) continue;
      const given = inputs[input.name];
      const expected = evaluateShape(input.shape, env);
      if (expected.some((d, i) => d !== given.shape[i]) || given.data.length !== expected.reduce((a, b) => a * b, 1)) {
        throw new InputError(`input ${input.name} has shape ${JSON.stringify(given.shape)} and ${given.data.length} ` +
          `values, the plan expects ${JSON.stringify(expected)}`);
      }
    }
    return env;
  }

  remember(key, program) {
    this.programs.set(key, program);
    if (this.programs.size > MAX_PROGRAMS) {
      const [oldKey, old] = this.programs.entries().next().value;
      this.programs.delete(oldKey);
      old.buffers.forEach((b) => b.destroy());
      old.uniform.destroy();
    }
  }

  /** Walk the plan once for these shapes: allocate, place tensors, and encode every launch. */
  prepare(plan, env) {
    const device = this.device;
    const tensors = {};
    const storages = {};
    const buffers = [];
    const dispatches = [];
    const allocate = (bytes, label) => {
      const buffer = createBuffer(device, bytes, label);
      buffers.push(buffer);
      return buffer;
    };
    for (const input of plan.inputs) {
      const shape = evaluateShape(input.shape, env);
      const weight = this.weights[input.name];
      tensors[input.id] = weight
        ? { buffer: weight.buffer, offset: 0, shape, dtype: input.dtype }
        : { buffer: allocate(tensorBytes(shape, input.dtype), input.name), offset: 0, shape, dtype: input.dtype };
    }
    for (const step of plan.steps) {
      switch (step.op) {
        case "storage":
          storages[step.id] = allocate(evaluate(step.bytes, env), step.id);
          break;
        case "tensor":
          tensors[step.id] = { buffer: storages[step.storage], offset: evaluate(step.offset, env), shape: evaluateShape(step.shape, env), dtype: step.dtype };
          break;
        case "alloc": {
          const shape = evaluateShape(step.shape, env);
          tensors[step.id] = { buffer: allocate(tensorBytes(shape, step.dtype), step.id), offset: 0, shape, dtype: step.dtype };
          break;
        }
        case "view":
          tensors[step.id] = { ...tensors[step.source], shape: evaluateShape(step.shape, env) };
          break;
        case "call":
          this.launchesOf(step, tensors, env, allocate).forEach((d) => dispatches.push(d));
          break;
        default:
          throw new Error(`unknown plan step ${step.op}`);
      }
    }
    const { encoded, uniform } = encodeDispatches(device, this.pipelines, dispatches);
    return { tensors, buffers, encoded, uniform };
  }

  /** One call step -> its function's launches, with the function's own shape variables bound. */
  launchesOf(step, tensors, env, allocate) {
    const func = this.manifest.functions[step.func];
    const args = step.args.map((id) => tensors[id]);
    const scalars = step.scalars.map((s) => evaluate(s, env));
    const local = {};
    for (const [name, where] of Object.entries(func.vars)) {
      const param = func.params[where.param];
      local[name] = param.scalar ? scalars[func.params.slice(0, where.param).filter((p) => p.scalar).length]
        : args[this.tensorIndex(func, where.param)].shape[where.dim];
    }
    const scratch = func.scratch.map((s, i) => allocate(evaluate(s.bytes, local), `${step.func}.scratch${i}`));
    return func.launches.map((launch) => ({
      kernel: launch.kernel,
      buffers: launch.buffers.map((b) => {
        if (b.scratch !== undefined) return { binding: b.binding, buffer: scratch[b.scratch], offset: 0, size: scratch[b.scratch].size };
        return { binding: b.binding, ...binding(args[this.tensorIndex(func, b.param)]) };
      }),
      pods: launch.pods.map((p) => evaluate(p, local)),
      grid: launch.grid.map((g) => evaluate(g, local)),
    }));
  }

  /** Position of a buffer parameter among the call's tensor arguments (scalars are passed apart). */
  tensorIndex(func, param) {
    return func.params.slice(0, param).filter((p) => !p.scalar).length;
  }

  destroy() {
    for (const program of this.programs.values()) {
      program.buffers.forEach((b) => b.destroy());
      program.uniform.destroy();
    }
    this.programs.clear();
  }
}
