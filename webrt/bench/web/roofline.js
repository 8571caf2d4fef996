// The raw limits of this browser, for the roofline: GFLOP/s of a register-blocked f32 matmul and
// GB/s of a streaming sum, once as WebAssembly SIMD128 (microkernels.c, built by roofline.py) and
// once as WGSL on the page's WebGPU adapter. Each is timed over repeats after a warm-up run.

const now = () => performance.now();

async function timed(run, minMs) {
  await run(); // warm-up: compilation, first-touch of memory
  let reps = 0;
  const t0 = now();
  while (now() - t0 < minMs) {
    await run();
    reps++;
  }
  return (now() - t0) / 1000 / reps; // seconds per repeat
}

async function wasmRoofs(url, { size, streamBytes, minMs }) {
  const { instance } = await WebAssembly.instantiate(await (await fetch(url)).arrayBuffer(), {});
  const x = instance.exports;
  const [m, n, k] = [size, size, size];
  const a = x.bench_alloc(m * k * 4);
  const b = x.bench_alloc(k * n * 4);
  const c = x.bench_alloc(m * n * 4);
  const floats = streamBytes / 4;
  const s = x.bench_alloc(streamBytes);
  let f = new Float32Array(x.memory.buffer);
  for (let i = 0; i < m * k; i++) f[a / 4 + i] = (i % 7) - 3;
  for (let i = 0; i < k * n; i++) f[b / 4 + i] = (i % 5) - 2;
  f.fill(1, s / 4, s / 4 + floats);
  const matmul = await timed(() => x.matmul(a, b, c, m, n, k), minMs);
  f = new Float32Array(x.memory.buffer);
  // check one element, so a broken kernel cannot report a speed
  let want = 0;
  for (let p = 0; p < k; p++) want += f[a / 4 + 3 * k + p] * f[b / 4 + p * n + 5];
  if (f[c / 4 + 3 * n + 5] !== want) throw new Error(`wasm matmul micro-kernel is wrong: ${f[c / 4 + 3 * n + 5]} != ${want}`);
  let total = 0;
  const stream = await timed(() => { total = x.sum(s, floats); }, minMs);
  if (total !== floats) throw new Error(`wasm sum micro-kernel is wrong: ${total} != ${floats}`);
  return { gflops: (2 * m * n * k) / matmul / 1e9, gbs: streamBytes / stream / 1e9,
           matmul: `${m}x${k} @ ${k}x${n} f32, 4x8 register block, SIMD128`, stream: `sum of ${streamBytes >> 20} MiB f32` };
}

const MATMUL_WGSL = (m, n, k) => `
@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;       // [${m}, ${k}/4]
@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;       // [${k}, ${n}/4]
@group(0) @binding(2) var<storage, read_write> C: array<vec4<f32>>; // [${m}, ${n}/4]
// each invocation: a 4x4 block of C (4 rows, one vec4 of columns); no shared memory, no barriers
@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let col = g.x;
  let row = g.y * 4u;
  var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0); var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
  for (var p = 0u; p < ${k / 4}u; p++) {
    let b0 = B[(4u * p) * ${n / 4}u + col]; let b1 = B[(4u * p + 1u) * ${n / 4}u + col];
    let b2 = B[(4u * p + 2u) * ${n / 4}u + col]; let b3 = B[(4u * p + 3u) * ${n / 4}u + col];
    let a0 = A[row * ${k / 4}u + p]; let a1 = A[(row + 1u) * ${k / 4}u + p];
    let a2 = A[(row + 2u) * ${k / 4}u + p]; let a3 = A[(row + 3u) * ${k / 4}u + p];
    c0 += a0.x * b0 + a0.y * b1 + a0.z * b2 + a0.w * b3;
    c1 += a1.x * b0 + a1.y * b1 + a1.z * b2 + a1.w * b3;
    c2 += a2.x * b0 + a2.y * b1 + a2.z * b2 + a2.w * b3;
    c3 += a3.x * b0 + a3.y * b1 + a3.z * b2 + a3.w * b3;
  }
  C[row * ${n / 4}u + col] = c0; C[(row + 1u) * ${n / 4}u + col] = c1;
  C[(row + 2u) * ${n / 4}u + col] = c2; C[(row + 3u) * ${n / 4}u + col] = c3;
}`;

const THREADS = 64 * 256;
const SUM_WGSL = (vec4s) => `
@group(0) @binding(0) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> S: array<vec4<f32>>;
// ${THREADS} invocations; neighbours read neighbouring vec4s
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  var s = vec4<f32>(0.0);
  for (var i = g.x; i < ${vec4s}u; i += ${THREADS}u) { s += X[i]; }
  S[g.x] = s;
}`;

async function webgpuRoofs({ size, streamBytes, minMs }) {
  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) return { error: "no WebGPU adapter" };
  const device = await adapter.requestDevice({ requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize } });
  const buffer = (bytes, data) => {
    const b = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    if (data) device.queue.writeBuffer(b, 0, data);
    return b;
  };
  const pipeline = (code) => device.createComputePipelineAsync({ layout: "auto", compute: { module: device.createShaderModule({ code }), entryPoint: "main" } });
  const dispatch = (pipe, buffers, grid) => async () => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipe);
    pass.setBindGroup(0, device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: buffers.map((b, i) => ({ binding: i, resource: { buffer: b } })) }));
    pass.dispatchWorkgroups(...grid);
    pass.end();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  const [m, n, k] = [size, size, size];
  const a = buffer(m * k * 4, Float32Array.from({ length: m * k }, (_, i) => (i % 7) - 3));
  const b = buffer(k * n * 4, Float32Array.from({ length: k * n }, (_, i) => (i % 5) - 2));
  const c = buffer(m * n * 4);
  const matmul = await timed(dispatch(await pipeline(MATMUL_WGSL(m, n, k)), [a, b, c], [n / 4 / 8, m / 4 / 8]), minMs);
  const x = buffer(streamBytes, new Float32Array(streamBytes / 4).fill(1));
  const s = buffer(THREADS * 16);
  const stream = await timed(dispatch(await pipeline(SUM_WGSL(streamBytes / 16)), [x, s], [THREADS / 64]), minMs);
  // check one element of C, so a broken kernel cannot report a speed
  const read = device.createBuffer({ size: m * n * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(c, 0, read, 0, m * n * 4);
  device.queue.submit([encoder.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const got = new Float32Array(read.getMappedRange())[3 * n + 5];
  let want = 0;
  for (let p = 0; p < k; p++) want += (((3 * k + p) % 7) - 3) * ((((p * n) + 5) % 5) - 2);
  device.destroy();
  if (got !== want) throw new Error(`WGSL matmul micro-kernel is wrong: ${got} != ${want}`);
  const info = adapter.info ?? {};
  return { gflops: (2 * m * n * k) / matmul / 1e9, gbs: streamBytes / stream / 1e9, adapter: { vendor: info.vendor, architecture: info.architecture },
           matmul: `${m}x${k} @ ${k}x${n} f32, 4x4 register block per invocation, no shared memory`, stream: `sum of ${streamBytes >> 20} MiB f32` };
}

export async function measureRoofs({ wasmUrl, wasm = {}, webgpu = {} }) {
  const out = {};
  try {
    out.wasm = await wasmRoofs(wasmUrl, { size: 256, streamBytes: 256 << 20, minMs: 600, ...wasm });
  } catch (err) {
    out.wasm = { error: `${err.name}: ${err.message}` };
  }
  try {
    out.webgpu = await webgpuRoofs({ size: 256, streamBytes: 64 << 20, minMs: 1500, ...webgpu });
  } catch (err) {
    out.webgpu = { error: `${err.name}: ${err.message}` };
  }
  return out;
}
