"""Extract device kernels (WGSL) and their launches from the scheduled TIR functions.

The TIR pipeline is run with an instrument that keeps the module right after SplitHostDevice. There,
each host function is a short list of buffer declarations, let-bindings and `call_ffi_kernel` calls;
a call names the device kernel, passes buffers and scalars in the kernel's parameter order, and ends
with the launch extents named by `launch_params`. All of it is expressed over the host function's
shape variables, which the plan binds from the actual argument shapes at run time.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import tvm
from tvm import tirx
from tvm.tirx.build import codegen_build, split_host_device_mods

from ..errors import WebrtError
from .exprs import expr_to_json, shape_to_json

_STORAGE = re.compile(r"@group\(0\) @binding\((\d+)\) var<storage, (read|read_write)> (\w+) : array<([\w<>, ]+)>;")
_UNIFORM = re.compile(r"@group\(0\) @binding\((\d+)\) var<uniform> podArgs : PODArgs;")
_POD_STRUCT = re.compile(r"struct PODArgs \{([^}]*)\}")
_WORKGROUP_SIZE = re.compile(r"@workgroup_size\((\d+), (\d+), (\d+)\)")
_SHARED = re.compile(r"var<workgroup> \w+ : array<(\w+), (\d+)>;")
_BYTES = {"f32": 4, "i32": 4, "u32": 4, "f16": 2}


@dataclass
class Kernel:
    """One WGSL compute shader, stored once however many functions launch it."""

    name: str
    wgsl: str
    storage_bindings: list[dict]
    pod_binding: int | None
    pod_fields: list[dict]
    workgroup_size: list[int]
    workgroup_storage_bytes: int

    def to_json(self) -> dict:
        return {
            "file": f"kernels/{self.name}.wgsl",
            "entry": self.name,
            "storage_bindings": self.storage_bindings,
            "pod_binding": self.pod_binding,
            "pod_fields": self.pod_fields,
            "workgroup_size": self.workgroup_size,
            "workgroup_storage_bytes": self.workgroup_storage_bytes,
        }


@dataclass
class KernelSet:
    kernels: dict[str, Kernel] = field(default_factory=dict)
    functions: dict[str, dict] = field(default_factory=dict)  # host function name -> launch recipe


def parse_wgsl(name: str, wgsl: str) -> Kernel:
    storage = [{"binding": int(b), "name": n, "access": a, "type": t}
               for b, a, n, t in _STORAGE.findall(wgsl)]
    uniform = _UNIFORM.search(wgsl)
    pod_fields = []
    if uniform:
        body = _POD_STRUCT.search(wgsl).group(1)
        for line in body.split(","):
            if ":" in line:
                fname, ftype = (part.strip() for part in line.split(":"))
                pod_fields.append({"name": fname, "type": ftype})
    shared = sum(_BYTES[t] * int(n) for t, n in _SHARED.findall(wgsl))
    wg = [int(x) for x in _WORKGROUP_SIZE.search(wgsl).groups()]
    return Kernel(name, wgsl, storage, int(uniform.group(1)) if uniform else None, pod_fields, wg, shared)


def _normalized(kernel_name: str, wgsl: str) -> str:
    body = "\n".join(line for line in wgsl.splitlines() if not line.startswith("//")).strip()
    return re.sub(rf"\b{re.escape(kernel_name)}\b", "KERNEL", body)


def lower_tir(mod: tvm.IRModule, target: tvm.target.Target) -> tuple[tvm.IRModule, dict[str, str]]:
    """Run the TIR pipeline on the module's PrimFuncs. Returns the module as it was right after
    SplitHostDevice (host functions with their launches) and the WGSL of every device kernel."""
    prim_funcs = {gv: f for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)}
    tir_mod = tirx.transform.BindTarget(target)(tvm.IRModule(prim_funcs))
    pipeline, _finalize_host, finalize_device = tirx.get_tir_pipeline("s_tir")

    @tvm.ir.instrument.pass_instrument
    class KeepAfterSplit:
        split = None

        def run_after_pass(self, module, info):
            if info.name == "tirx.SplitHostDevice":
                KeepAfterSplit.split = module

    with tvm.transform.PassContext(instruments=[KeepAfterSplit()]):
        lowered = pipeline(tir_mod)
    _host, device_mods = split_host_device_mods(lowered)
    wgsl = {}
    for dev_target, device_mod in device_mods.items():
        device_mod = finalize_device()(device_mod)
        for gv, func in device_mod.functions.items():
            wgsl[gv.name_hint] = codegen_build(tvm.IRModule({gv: func}), dev_target).inspect_source()
    return KeepAfterSplit.split, wgsl


def extract_kernels(mod: tvm.IRModule, target: tvm.target.Target) -> KernelSet:
    split, sources = lower_tir(mod, target)

    # kernels with the same code (up to their name) are stored once
    by_name: dict[str, Kernel] = {}
    by_text: dict[str, Kernel] = {}
    kernels = KernelSet()
    for name, wgsl in sources.items():
        key = hashlib.sha256(_normalized(name, wgsl).encode()).hexdigest()
        if key not in by_text:
            by_text[key] = parse_wgsl(name, wgsl)
            kernels.kernels[name] = by_text[key]
        by_name[name] = by_text[key]

    device_params = {gv.name_hint: f.params for gv, f in split.functions.items()
                     if f.attrs.get("calling_conv") == 2}
    for gv, func in split.functions.items():
        if func.attrs.get("calling_conv") == 2:
            continue
        kernels.functions[gv.name_hint] = _host_function_recipe(gv.name_hint, func, by_name, device_params)
    return kernels


def _host_function_recipe(name: str, func: tirx.PrimFunc, kernels: dict[str, Kernel],
                          device_params: dict) -> dict:
    """How to run one host function: its params, shape-var bindings, scratch buffers and launches."""
    params, bound = [], {}
    for i, p in enumerate(func.params):
        if isinstance(p.ty, tirx.BufferType):
            params.append({"shape": shape_to_json(p.ty.shape), "dtype": str(p.ty.dtype)})
            for j, dim in enumerate(p.ty.shape):
                if isinstance(dim, tirx.Var) and dim.name not in bound:
                    bound[dim.name] = {"param": i, "dim": j}
        else:
            params.append({"scalar": str(p.ty.dtype)})
            bound[p.name] = {"param": i}

    param_index = {p: i for i, p in enumerate(func.params)}
    inline: dict = {}      # let-bound vars -> their JSON value
    declared: dict = {}    # declared buffer var -> the var whose data it views
    scratch: list = []
    scratch_index: dict = {}
    launches: list = []

    def source_of(var):
        while var in declared:
            var = declared[var]
        if var in param_index:
            return {"param": param_index[var]}
        if var in scratch_index:
            return {"scratch": scratch_index[var]}
        raise WebrtError(f"internal: {name}: buffer {var} is neither a parameter nor scratch")

    def visit(stmt):
        if isinstance(stmt, tirx.SeqStmt):
            for s in stmt.seq:
                visit(s)
        elif isinstance(stmt, tirx.Bind):
            inline[stmt.var] = expr_to_json(stmt.value, inline)
        elif isinstance(stmt, tirx.DeclBuffer):
            data = stmt.data
            if not (isinstance(data, tvm.ir.expr.Call) and data.op.name == "tirx.buffer_data"):
                raise WebrtError(f"internal: {name}: unsupported buffer declaration {stmt.buffer}")
            declared[stmt.buffer] = data.args[0]
        elif isinstance(stmt, tirx.AllocBuffer):
            buf = stmt.buffer if hasattr(stmt, "buffer") else stmt
            scratch_index[buf] = len(scratch)
            nbytes = ["mul", _product(buf.ty.shape, inline), tvm.DataType(str(buf.ty.dtype)).bits // 8]
            scratch.append({"bytes": nbytes})
        elif isinstance(stmt, tirx.Evaluate) and isinstance(stmt.value, tvm.ir.expr.Call) \
                and stmt.value.op.name == "tirx.call_ffi_kernel":
            launches.append(_launch(name, stmt.value, kernels, device_params, inline, source_of))
        else:
            raise WebrtError(f"internal: {name}: unsupported host statement {type(stmt).__name__}")
        if hasattr(stmt, "body") and not isinstance(stmt, tirx.SeqStmt):
            visit(stmt.body)

    visit(func.body)
    return {"params": params, "vars": bound, "scratch": scratch, "launches": launches}


def _wgsl_name(name: str) -> str:
    """The WGSL code generator turns characters that are not identifier-safe into '_'."""
    return re.sub(r"\W", "_", name)


def _product(shape, inline):
    out = 1
    for dim in shape:
        out = ["mul", out, expr_to_json(dim, inline)]
    return out


def _launch(name, call, kernels, device_params, inline, source_of) -> dict:
    kernel_name = call.args[0].value
    kernel = kernels[kernel_name]
    params = device_params[kernel_name]
    values = list(call.args[1:1 + len(params)])
    extents = list(call.args[1 + len(params):])
    tags = list(call.attrs.launch_params)
    if len(extents) != len(tags) or any(t.startswith("tirx.") for t in tags):
        raise WebrtError(f"internal: {kernel_name}: unsupported launch parameters {tags}")

    binding_of = {b["name"]: b["binding"] for b in kernel.storage_bindings}
    buffers, scalars = [], {}
    for p, value in zip(params, values):
        if isinstance(p.ty, tvm.ir.PointerType):
            buffers.append({"binding": binding_of[_wgsl_name(p.name)], **source_of(value.args[0])})
        else:
            scalars[p.name] = expr_to_json(value, inline)
    pods = [scalars[f["name"]] for f in kernel.pod_fields if f["name"] != "packGridDimX"]

    grid = [1, 1, 1]
    for tag, extent in zip(tags, extents):
        axis = "xyz".index(tag[-1])
        if tag.startswith("blockIdx"):
            grid[axis] = expr_to_json(extent, inline)
        elif not (isinstance(extent, tirx.IntImm) and int(extent) == kernel.workgroup_size[axis]):
            raise WebrtError(f"internal: {kernel_name}: thread extent {extent} differs from the "
                             f"WGSL workgroup size {kernel.workgroup_size}")
    return {"kernel": kernel.name, "buffers": buffers, "pods": pods, "grid": grid}
