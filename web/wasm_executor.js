// Runs an entry's plan on the WebAssembly kernels: the same steps as the WebGPU executor, with
// storage in wasm memory and each call step one call of the function's export. Storage is
// allocated once per size bucket, as in plan_executor.js.

import { InputError } from "./errors.js";
import { bindShapeVars, product, ProgramCache, resolveLater, tensorBytes, TYPED_ARRAY } from "./plan_inputs.js";
import { evaluate, evaluateShape } from "./shape_expr.js";

export class WasmExecutor {
  constructor(kernels, manifest, bound) {
    this.kernels = kernels; // WasmKernels
    this.manifest = manifest;
    this.bound = bound; // name -> {ptr, shape, dtype}: weights and state in wasm memory
    this.exportOf = {}; // function -> the export that runs it, when a tuned candidate won
    this.programs = new ProgramCache((plan, capacity) => this.prepare(plan, capacity),
      (program) => program.allocations.forEach((ptr) => this.kernels.free(ptr)),
      () => this.manifest.functions);
  }

  /** As PlanExecutor.run; `profile` (an object) gets milliseconds added per function. */
  async run(entryName, inputs, { readback, profile } = {}) {
    // a `later` input (the grammar's mask) is asked for first: the kernels run on this thread
    const { plan, program, calls, shaped } = this.callsOf(entryName, await resolveLater(inputs));
    for (const call of calls) {
      const t0 = profile ? performance.now() : 0;
      this.kernels.call(this.exportOf[call.func] ?? call.func, call.args);
      if (profile) profile[call.func] = (profile[call.func] ?? 0) + performance.now() - t0;
    }
    const wanted = readback ?? plan.outputs.map((_, i) => i);
    return plan.outputs.map((id, i) => {
      if (!wanted.includes(i)) return null;
      const out = shaped(id);
      const bytes = this.kernels.bytes(out.ptr, tensorBytes(out.shape, out.dtype)).slice();
      return { data: new TYPED_ARRAY[out.dtype](bytes.buffer, 0, product(out.shape)), shape: out.shape, dtype: out.dtype };
    });
  }

  /**
   * Write an entry's inputs; returns {plan, env, program, calls, shaped} where each call is {func,
   * step (its plan step index), args (the function's arguments in parameter order)}. The tuner
   * (tuner.js) runs these calls one by one.
   */
  callsOf(entryName, inputs) {
    const plan = this.manifest.entries[entryName];
    if (!plan) throw new InputError(`the artifact has no entry ${entryName}; it has ${Object.keys(this.manifest.entries)}`);
    const env = bindShapeVars(plan, inputs, this.bound);
    const program = this.programs.get(entryName, plan, env);
    const shaped = (id) => ({ ...program.tensors[id], shape: evaluateShape(program.tensors[id].shape, env) });
    for (const input of plan.inputs) {
      if (input.name in this.bound || input.values) continue;
      this.kernels.write(program.tensors[input.id].ptr, inputs[input.name].data);
    }
    // arguments in the function's parameter order: tensors and integers interleaved
    const calls = program.calls.map((step) => {
      const tensors = step.args.map(shaped);
      const scalars = step.scalars.map((s) => evaluate(s, env));
      return { func: step.func, step: step.index, args: step.order.map((isScalar) => (isScalar ? scalars.shift() : tensors.shift())) };
    });
    return { plan, env, program, calls, shaped };
  }

  /** Call the tuner's winners ({function: candidate id}: exports `<function>__<id>`) from now on. */
  useWinners(winners = {}) {
    this.exportOf = Object.fromEntries(Object.entries(winners).map(([f, id]) => [f, `${f}__${id}`]));
  }

  /** Allocate for the capacity env and place every tensor; shapes stay symbolic until a run. */
  prepare(plan, capacity) {
    const allocations = [];
    const allocate = (bytes) => {
      const ptr = this.kernels.alloc(bytes);
      allocations.push(ptr);
      // zeroed, as WebGPU's new buffers are: memory freed by an evicted program held other data, and
      // a plan read storage it had not written (generation went wrong once the logprobs programs
      // made evictions frequent; zeroing fixed it)
      this.kernels.zero(ptr, bytes);
      return ptr;
    };
    const tensors = {};
    const storages = {};
    const calls = [];
    for (const input of plan.inputs) {
      if (input.values) continue;
      const known = this.bound[input.name];
      tensors[input.id] = { ptr: known ? known.ptr : allocate(tensorBytes(evaluateShape(input.shape, capacity), input.dtype)), shape: input.shape, dtype: input.dtype };
    }
    for (const [index, step] of plan.steps.entries()) {
      if (step.op === "storage") storages[step.id] = allocate(evaluate(step.bytes, capacity));
      else if (step.op === "tensor") tensors[step.id] = { ptr: storages[step.storage] + evaluate(step.offset, capacity), shape: step.shape, dtype: step.dtype };
      else if (step.op === "alloc") tensors[step.id] = { ptr: allocate(tensorBytes(evaluateShape(step.shape, capacity), step.dtype)), shape: step.shape, dtype: step.dtype };
      else if (step.op === "view") tensors[step.id] = { ...tensors[step.source], shape: step.shape };
      else if (step.op === "call") {
        const order = this.manifest.functions[step.func].params.map((p) => Boolean(p.scalar));
        calls.push({ func: step.func, args: step.args, scalars: step.scalars, order, index });
      }
      else throw new Error(`unknown plan step ${step.op}`);
    }
    return { tensors, calls, allocations };
  }

  destroy() {
    this.programs.clear();
  }
}
