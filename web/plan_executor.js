// Runs an entry's execution plan (docs/ARTIFACT.md, "Plan").
//
// A program is prepared once per entry and size bucket: every shape variable is rounded up to a
// power of two, storage is allocated for those upper bounds, and each launch gets its bind group.
// A run then only evaluates the launches' POD arguments and grids for the actual shapes, writes
// them into one uniform buffer, and submits every dispatch at once. So decoding token after token
// (offset 17, 18, ...) reuses one program and allocates nothing.

import { InputError } from "./errors.js";
import { bindShapeVars, product, ProgramCache, resolveLater, tensorBytes, TYPED_ARRAY } from "./plan_inputs.js";
import { evaluate, evaluateShape } from "./shape_expr.js";
import { bindGroupFor, createBuffer, submit, trackedBuffer, writePods } from "./webgpu_backend.js";

export class PlanExecutor {
  constructor(device, manifest, pipelines, bound) {
    this.device = device;
    this.manifest = manifest;
    this.pipelines = pipelines;
    this.bound = bound; // name -> {buffer, shape, dtype}: weights and state, bound to inputs by name
    this.programs = new ProgramCache((plan, capacity) => this.prepare(plan, capacity),
      (program) => program.buffers.forEach((b) => b.destroy()),
      () => this.manifest.functions);
  }

  /**
   * inputs: for every entry input that is neither a weight nor state, either
   * {data: TypedArray, shape: number[]} for a tensor or {values: number[]} for integers (an offset).
   * Returns one item per entry output: {data, shape, dtype} for the outputs listed in `readback`
   * (output indices; default all), null for the others, which stay on the device.
   */
  async run(entryName, inputs, { readback, profile } = {}) {
    if (profile) inputs = await resolveLater(inputs);
    const { plan, env, program, dispatches } = this.dispatchesOf(entryName, inputs);
    if (profile) await this.profile(dispatches, profile);
    const late = await this.submitUntilLate(plan, program, dispatches, inputs);
    const wanted = readback ?? plan.outputs.map((_, i) => i);
    const outputs = plan.outputs.map((id) => {
      const tensor = program.tensors[id];
      const shape = evaluateShape(tensor.shape, env);
      return { tensor, shape, size: Math.ceil(tensorBytes(shape, tensor.dtype) / 4) * 4 };
    });
    const regions = wanted.map((i) => ({ buffer: outputs[i].tensor.buffer, offset: outputs[i].tensor.offset, size: outputs[i].size }));
    const bytes = await submit(this.device, dispatches.slice(late), regions);
    return outputs.map((out, i) => {
      const j = wanted.indexOf(i);
      if (j < 0) return null;
      return { data: new TYPED_ARRAY[out.tensor.dtype](bytes[j], 0, product(out.shape)), shape: out.shape, dtype: out.tensor.dtype };
    });
  }

  /**
   * With `later` inputs (the grammar's mask): submit the dispatches before the first that reads
   * one, ask for the values while the device runs them, and write them. Returns how many dispatches
   * went (0 without later inputs). The queue keeps the order: first part, the writes, the rest.
   */
  async submitUntilLate(plan, program, dispatches, inputs) {
    const late = plan.inputs.filter((input) => inputs[input.name]?.later);
    if (!late.length) return 0;
    const reads = (d) => late.some((input) => plan.steps[d.launch.step].args.includes(input.id));
    const first = Math.max(0, dispatches.findIndex(reads));
    const running = first > 0 ? submit(this.device, dispatches.slice(0, first), []) : null;
    const values = await resolveLater(inputs, running !== null);
    await running;
    for (const input of late) {
      const { data } = values[input.name];
      this.device.queue.writeBuffer(program.tensors[input.id].buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    }
    return first;
  }

  /**
   * Write an entry's inputs and POD arguments; returns {plan, env, program, dispatches} (each
   * dispatch: {launch, pods, grid, folded}) without submitting anything. The tuner (tuner.js)
   * walks these dispatches step by step.
   */
  dispatchesOf(entryName, inputs) {
    const plan = this.manifest.entries[entryName];
    if (!plan) throw new InputError(`the artifact has no entry ${entryName}; it has ${Object.keys(this.manifest.entries)}`);
    const env = bindShapeVars(plan, inputs, this.bound);
    const program = this.programs.get(entryName, plan, env);
    for (const input of plan.inputs) {
      if (input.name in this.bound || input.values || inputs[input.name].later) continue;
      const data = inputs[input.name].data;
      // nothing to write; Deno's writeBuffer (2.9) panics on an empty ArrayBuffer, which has no backing store
      if (data.byteLength === 0) continue;
      this.device.queue.writeBuffer(program.tensors[input.id].buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    }
    const dispatches = evaluateLaunches(program.launches, env);
    writePods(this.device, program.uniform, dispatches);
    return { plan, env, program, dispatches };
  }

  /** Use other launch recipes (the tuner's winners) from now on; pipelines must hold their kernels. */
  useManifest(manifest, pipelines) {
    this.programs.clear();
    this.manifest = manifest;
    this.pipelines = pipelines;
  }

  /** Time each dispatch alone (one submission each); adds milliseconds per function to `into`. */
  async profile(dispatches, into) {
    for (const d of dispatches) {
      const t0 = performance.now();
      await submit(this.device, [d], []);
      await this.device.queue.onSubmittedWorkDone();
      into[d.launch.func] = (into[d.launch.func] ?? 0) + performance.now() - t0;
    }
  }

  /** Walk the plan once: allocate for the capacity env, place tensors, make each launch's bind group. */
  prepare(plan, capacity) {
    const buffers = [];
    const allocate = (bytes, label) => {
      const buffer = createBuffer(this.device, bytes, label);
      buffers.push(buffer);
      return buffer;
    };
    // tensors keep their symbolic shape; bindings span from the tensor's offset to its buffer's end
    const tensors = {};
    const storages = {};
    const launches = [];
    for (const input of plan.inputs) {
      if (input.values) continue;
      const known = this.bound[input.name];
      const buffer = known ? known.buffer : allocate(tensorBytes(evaluateShape(input.shape, capacity), input.dtype), input.name);
      tensors[input.id] = { buffer, offset: 0, shape: input.shape, dtype: input.dtype };
    }
    for (const [index, step] of plan.steps.entries()) {
      if (step.op === "storage") storages[step.id] = allocate(evaluate(step.bytes, capacity), step.id);
      else if (step.op === "tensor") tensors[step.id] = { buffer: storages[step.storage], offset: evaluate(step.offset, capacity), shape: step.shape, dtype: step.dtype };
      else if (step.op === "alloc") tensors[step.id] = { buffer: allocate(tensorBytes(evaluateShape(step.shape, capacity), step.dtype), step.id), offset: 0, shape: step.shape, dtype: step.dtype };
      else if (step.op === "view") tensors[step.id] = { ...tensors[step.source], shape: step.shape };
      else if (step.op === "call") launches.push(...this.launchesOf(step, tensors, capacity, allocate).map((l) => ({ ...l, step: index })));
      else throw new Error(`unknown plan step ${step.op}`);
    }
    const uniform = trackedBuffer(this.device, {
      label: "pod-args", size: Math.max(1, launches.length) * 256, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    buffers.push(uniform);
    launches.forEach((launch, i) => {
      const compiled = this.pipelines[launch.kernel];
      launch.slot = i;
      launch.pipeline = compiled.pipeline;
      launch.podFields = compiled.kernel.pod_binding === null ? [] : compiled.kernel.pod_fields;
      launch.bindGroup = bindGroupFor(this.device, compiled, launch.buffers, uniform, i);
    });
    return { tensors, launches, uniform, buffers };
  }

  /**
   * A call step's launches; each function variable is kept as an expression over the entry's
   * variables. func: the launch recipe (default: the manifest's; the tuner passes a candidate's).
   */
  launchesOf(step, tensors, capacity, allocate, func = this.manifest.functions[step.func]) {
    const args = step.args.map((id) => tensors[id]);
    const tensorIndex = (param) => func.params.slice(0, param).filter((p) => !p.scalar).length;
    const scalarIndex = (param) => func.params.slice(0, param).filter((p) => p.scalar).length;
    const locals = Object.entries(func.vars).map(([name, where]) => [name, func.params[where.param].scalar
      ? step.scalars[scalarIndex(where.param)]
      : args[tensorIndex(where.param)].shape[where.dim]]);
    const localCapacity = Object.fromEntries(locals.map(([name, expr]) => [name, evaluate(expr, capacity)]));
    const scratch = func.scratch.map((s, i) => allocate(evaluate(s.bytes, localCapacity), `${step.func}.scratch${i}`));
    return func.launches.map((launch) => ({
      kernel: launch.kernel,
      func: step.func,
      locals,
      pods: launch.pods,
      grid: launch.grid,
      buffers: launch.buffers.map((b) => {
        const { buffer, offset } = b.scratch !== undefined ? { buffer: scratch[b.scratch], offset: 0 } : args[tensorIndex(b.param)];
        return { binding: b.binding, buffer, offset, size: buffer.size - offset };
      }),
    }));
  }

  destroy() {
    this.programs.clear();
  }
}

/** Each launch's POD values and grid for the shape variables `env`; empty grids are dropped. */
export function evaluateLaunches(launches, env) {
  return launches.map((launch) => {
    const local = {};
    for (const [name, expr] of launch.locals) local[name] = evaluate(expr, env);
    return { launch, pods: launch.pods.map((p) => evaluate(p, local)), grid: launch.grid.map((g) => evaluate(g, local)) };
  }).filter((d) => d.grid.every((n) => n > 0)); // e.g. no penalized tokens: nothing to launch
}
