// WebAssembly backend: TVM-compiled kernels (kernels.wasm, see webrt/compile/wasm.py) called with
// TVM's packed calling convention. Tensors live in the module's memory, 64-byte aligned.
//
//   TVMFFIAny (16 bytes): i32 type index (1 = int, 7 = DLTensor*), i32 0, then a 64-bit value.
//   DLTensor on wasm32 (40 bytes): data@0, device {type 1 = CPU, id}@4, ndim@12,
//   dtype {code, bits, lanes}@16, shape*@20 (int64[ndim]), strides*@24 (null), byte_offset@32.

import { DeviceError } from "./errors.js";

const DTYPE_CODES = { int32: [0, 32], uint32: [1, 32], float32: [2, 32] };
const SCRATCH_BYTES = 1 << 16;

export class WasmKernels {
  static async create(bytes) {
    const { instance } = await WebAssembly.instantiate(bytes, {});
    return new WasmKernels(instance.exports);
  }

  constructor(exports) {
    this.x = exports;
    this.x._initialize?.();
    this.scratch = this.alloc(SCRATCH_BYTES); // argument structs of the call in progress
  }

  get memoryBytes() {
    return this.x.memory.buffer.byteLength;
  }

  alloc(bytes) {
    const ptr = this.x.webrt_alloc(Math.max(bytes, 4));
    if (!ptr) throw new DeviceError(`wasm memory is exhausted allocating ${bytes} bytes (wasm32 allows 4 GiB)`);
    return ptr;
  }

  free(ptr) {
    this.x.webrt_free(ptr);
  }

  /** A live view of memory (the buffer is replaced whenever memory grows). */
  bytes(ptr, length) {
    return new Uint8Array(this.x.memory.buffer, ptr, length);
  }

  write(ptr, data) {
    this.bytes(ptr, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  zero(ptr, length) {
    this.bytes(ptr, length).fill(0);
  }

  /** Call function `name` with args: tensors {ptr, shape, dtype} or integers. */
  call(name, args) {
    const fn = this.x[`__tvm_ffi_${name}`];
    if (!fn) throw new DeviceError(`kernels.wasm has no function ${name}`);
    const view = new DataView(this.x.memory.buffer);
    const argBase = this.scratch;
    let at = argBase + 16 * args.length + 16; // after the args array and the result slot
    args.forEach((arg, i) => {
      const slot = argBase + 16 * i;
      view.setInt32(slot + 4, 0, true);
      view.setUint32(slot + 12, 0, true);
      if (typeof arg === "number") {
        view.setInt32(slot, 1, true);
        view.setBigInt64(slot + 8, BigInt(arg), true);
        return;
      }
      const dl = at;
      const shape = dl + 40;
      at = shape + 8 * arg.shape.length;
      const [code, bits] = DTYPE_CODES[arg.dtype];
      view.setUint32(dl, arg.ptr, true);
      view.setInt32(dl + 4, 1, true);
      view.setInt32(dl + 8, 0, true);
      view.setInt32(dl + 12, arg.shape.length, true);
      view.setUint8(dl + 16, code);
      view.setUint8(dl + 17, bits);
      view.setUint16(dl + 18, 1, true);
      view.setUint32(dl + 20, shape, true);
      view.setUint32(dl + 24, 0, true);
      view.setBigUint64(dl + 32, 0n, true);
      arg.shape.forEach((d, j) => view.setBigInt64(shape + 8 * j, BigInt(d), true));
      view.setInt32(slot, 7, true);
      view.setUint32(slot + 8, dl, true);
    });
    if (at > argBase + SCRATCH_BYTES) throw new DeviceError(`too many arguments for ${name}`);
    const rc = fn(0, argBase, args.length, argBase + 16 * args.length);
    if (rc !== 0) throw new DeviceError(`wasm kernel ${name} failed: ${this.lastError()}`);
  }

  lastError() {
    const ptr = this.x.webrt_last_error();
    const bytes = this.bytes(ptr, 512);
    return new TextDecoder().decode(bytes.slice(0, bytes.indexOf(0)));
  }
}
