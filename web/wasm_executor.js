// Runs an entry's plan on the WebAssembly kernels: the same steps as the WebGPU executor, with
// storage in wasm memory and each call step one call of the function's export. A program is
// prepared once per size bucket, as in plan_executor.js, but all programs share one arena: the
// kernels run on one thread of control, so no two programs are ever in use at once, and each
// places its storage at offsets from the arena's start. One allocation per storage (zig's libc
// malloc rounds each large one up to a power of two) held once per program had made the real
// Gemma 3 270M's wasm memory 88 MiB larger after one prompt (bench/gemma3_wllama.md).
//
// Each call's argument block (the packed-call slots and DLTensors the kernel reads) also lies in
// the arena, written once while the program holds it: only the calls whose shapes or integers
// depend on the shape variables (a decode step's cache length) are packed again per run. Packing
// all ~490 calls of the default model's decode step per run cost about as much as its
// attention kernels.

import { InputError } from "./errors.js";
import { argBlockBytes } from "./wasm_backend.js";
import { bindShapeVars, product, ProgramCache, resolveLater, tensorBytes, TYPED_ARRAY } from "./plan_inputs.js";
import { evaluate, evaluateShape } from "./shape_expr.js";

export class WasmExecutor {
  constructor(kernels, manifest, bound) {
    this.kernels = kernels; // WasmKernels
    this.manifest = manifest;
    this.bound = bound; // name -> {ptr, shape, dtype}: weights and state in wasm memory
    this.exportOf = {}; // function -> the export that runs it, when a tuned candidate won
    // programs own no memory: their storage lies in the arena, which only grows
    this.programs = new ProgramCache((plan, capacity) => this.prepare(plan, capacity), () => {},
      () => this.manifest.functions);
    this.arena = { ptr: 0, bytes: 0 };
    this.inArena = null; // the program whose storage the arena holds now
  }

  /** As PlanExecutor.run; `profile` (an object) gets milliseconds added per function. */
  async run(entryName, inputs, { readback, profile } = {}) {
    // a `later` input (the grammar's mask) is asked for first: the kernels run on this thread
    const { plan, env, program, shaped } = this.bind(entryName, await resolveLater(inputs));
    const base = this.arena.ptr;
    const repackAll = program.packedAt !== base;
    for (const step of program.calls) {
      if (repackAll || !step.fixed) this.kernels.pack(this.argsOf(step, env, shaped), base + step.argsAt);
    }
    program.packedAt = base;
    for (const step of program.calls) {
      const t0 = profile ? performance.now() : 0;
      this.kernels.invoke(this.exportOf[step.func] ?? step.func, base + step.argsAt, step.order.length);
      if (profile) profile[step.func] = (profile[step.func] ?? 0) + performance.now() - t0;
    }
    const wanted = readback ?? plan.outputs.map((_, i) => i);
    return plan.outputs.map((id, i) => {
      if (!wanted.includes(i)) return null;
      const out = shaped(id);
      const bytes = this.kernels.bytes(out.ptr, tensorBytes(out.shape, out.dtype)).slice();
      return { data: new TYPED_ARRAY[out.dtype](bytes.buffer, 0, product(out.shape)), shape: out.shape, dtype: out.dtype };
    });
  }

  /** A call step's arguments in the function's parameter order: tensors and integers interleaved. */
  argsOf(step, env, shaped) {
    const tensors = step.args.map(shaped);
    const scalars = step.scalars.map((s) => evaluate(s, env));
    return step.order.map((isScalar) => (isScalar ? scalars.shift() : tensors.shift()));
  }

  /** Bind the shape variables, take the program into the arena and write the entry's inputs. */
  bind(entryName, inputs) {
    const plan = this.manifest.entries[entryName];
    if (!plan) throw new InputError(`the artifact has no entry ${entryName}; it has ${Object.keys(this.manifest.entries)}`);
    const env = bindShapeVars(plan, inputs, this.bound);
    const program = this.programs.get(entryName, plan, env);
    this.enterArena(program);
    const ptrOf = (t) => t.ptr ?? this.arena.ptr + t.at;
    const shaped = (id) => {
      const t = program.tensors[id];
      return { ptr: ptrOf(t), shape: evaluateShape(t.shape, env), dtype: t.dtype };
    };
    for (const input of plan.inputs) {
      if (input.name in this.bound || input.values) continue;
      this.kernels.write(ptrOf(program.tensors[input.id]), inputs[input.name].data);
    }
    return { plan, env, program, shaped };
  }

  /**
   * Write an entry's inputs; returns {plan, env, program, calls, shaped} where each call is {func,
   * step (its plan step index), args (the function's arguments in parameter order)}. The tuner
   * (tuner.js) runs these calls one by one.
   */
  callsOf(entryName, inputs) {
    const { plan, env, program, shaped } = this.bind(entryName, inputs);
    const calls = program.calls.map((step) => ({ func: step.func, step: step.index, args: this.argsOf(step, env, shaped) }));
    return { plan, env, program, calls, shaped };
  }

  /** Call the tuner's winners ({function: candidate id}: exports `<function>__<id>`) from now on. */
  useWinners(winners = {}) {
    this.exportOf = Object.fromEntries(Object.entries(winners).map(([f, id]) => [f, `${f}__${id}`]));
  }

  /**
   * Place every tensor for the capacity env: weights and state where they are bound ({ptr}), the
   * rest at offsets in the arena ({at}, 64-byte aligned; program.bytes in all). Shapes stay
   * symbolic until a run.
   */
  prepare(plan, capacity) {
    let bytes = 0;
    const place = (size) => {
      const at = bytes;
      bytes += Math.ceil(size / 64) * 64;
      return at;
    };
    const tensors = {};
    const storages = {};
    const calls = [];
    for (const input of plan.inputs) {
      if (input.values) continue;
      const known = this.bound[input.name];
      const where = known ? { ptr: known.ptr } : { at: place(tensorBytes(evaluateShape(input.shape, capacity), input.dtype)) };
      tensors[input.id] = { ...where, shape: input.shape, dtype: input.dtype };
    }
    for (const [index, step] of plan.steps.entries()) {
      if (step.op === "storage") storages[step.id] = place(evaluate(step.bytes, capacity));
      else if (step.op === "tensor") tensors[step.id] = { at: storages[step.storage] + evaluate(step.offset, capacity), shape: step.shape, dtype: step.dtype };
      else if (step.op === "alloc") tensors[step.id] = { at: place(tensorBytes(evaluateShape(step.shape, capacity), step.dtype)), shape: step.shape, dtype: step.dtype };
      else if (step.op === "view") tensors[step.id] = { ...tensors[step.source], shape: step.shape };
      else if (step.op === "call") {
        const order = this.manifest.functions[step.func].params.map((p) => Boolean(p.scalar));
        calls.push({ func: step.func, args: step.args, scalars: step.scalars, order, index });
      }
      else throw new Error(`unknown plan step ${step.op}`);
    }
    for (const call of calls) {
      const ranks = [...call.args.map((id) => tensors[id].shape.length), ...call.scalars.map(() => null)];
      call.argsAt = place(argBlockBytes(ranks));
      // fixed: no shape or integer argument depends on a shape variable, so one packing serves every run
      call.fixed = call.args.every((id) => tensors[id].shape.every((d) => typeof d === "number")) &&
        call.scalars.every((s) => typeof s === "number");
    }
    return { tensors, calls, bytes, packedAt: null };
  }

  /**
   * Make the arena hold `program`: large enough (grown in place when it ends memory, else moved to
   * new pages), and zeroed when another program used it last, as WebGPU's new buffers are: a plan
   * read storage it had not written once (generation went wrong when memory an evicted program had
   * freed held other data; zeroing fixed it).
   */
  enterArena(program) {
    if (program.bytes > this.arena.bytes) {
      const atEnd = this.arena.bytes > 0 && this.arena.ptr + this.arena.bytes === this.kernels.memoryBytes;
      const what = "the plan's intermediate tensors";
      if (atEnd) this.kernels.growPages(program.bytes - this.arena.bytes, what);
      else this.arena.ptr = this.kernels.growPages(program.bytes, what);
      this.arena.bytes = Math.ceil(program.bytes / 65536) * 65536;
      this.inArena = null;
    }
    if (this.inArena !== program) {
      this.kernels.zero(this.arena.ptr, program.bytes);
      program.packedAt = null; // its argument blocks are gone with the rest
    }
    this.inArena = program;
  }

  destroy() {
    this.programs.clear();
  }
}
