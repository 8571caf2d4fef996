"""The execution plan: an entry function after memory planning, as an ordered list of steps.

Step kinds (see docs/ARTIFACT.md):
  storage  {id, bytes}                      a GPU buffer, sized by a shape expression
  tensor   {id, storage, offset, shape, dtype}  a tensor placed in a storage
  alloc    {id, shape, dtype}               a tensor with its own buffer (entry outputs)
  view     {id, source, shape}              the same bytes with another shape (reshape)
  call     {func, args, scalars}            run a host function's kernel launches
"""

from __future__ import annotations

import tvm
from tvm import relax

from ..errors import WebrtError
from .exprs import expr_to_json, shape_to_json


class _Names:
    """Stable, unique ids for Relax vars (several vars may share a name hint)."""

    def __init__(self):
        self.ids: dict = {}
        self.used: set = set()

    def define(self, var) -> str:
        base, n = var.name, 0
        name = base
        while name in self.used:
            n += 1
            name = f"{base}.{n}"
        self.used.add(name)
        self.ids[var] = name
        return name

    def __getitem__(self, var) -> str:
        if var not in self.ids:
            raise WebrtError(f"internal: the plan uses {var.name} before defining it")
        return self.ids[var]


def entry_plan(func: relax.Function, param_names: list[str]) -> dict:
    """Turn one lowered Relax function into {inputs, shape_vars, steps, output}."""
    names = _Names()
    inputs, shape_vars = [], {}
    for i, (param, external) in enumerate(zip(func.params, param_names)):
        ty = param.ty
        if isinstance(ty, relax.ShapeType):  # integers passed by value, e.g. a position offset
            dims = ty.values
            inputs.append({"id": names.define(param), "name": external, "values": shape_to_json(dims)})
        else:
            dims = ty.shape
            inputs.append({"id": names.define(param), "name": external, "shape": shape_to_json(dims),
                           "dtype": str(ty.dtype)})
        for j, dim in enumerate(dims):
            if isinstance(dim, tvm.tirx.Var) and dim.name not in shape_vars:
                shape_vars[dim.name] = {"input": i, "dim": j}

    steps = []
    for block in func.body.blocks:
        for binding in block.bindings:
            steps.extend(_step(binding.var, binding.value, names))
    result = func.body.body
    ids = [names[f] for f in result.fields] if isinstance(result, relax.Tuple) else names[result]
    outputs = ids if isinstance(ids, list) else [ids]
    return {"inputs": inputs, "shape_vars": shape_vars, "steps": steps, "outputs": outputs}


def _step(var, value, names: _Names) -> list[dict]:
    if isinstance(value, relax.Var):  # alias: the new name refers to the same tensor
        names.ids[var] = names[value]
        return []
    if isinstance(value, relax.Tuple):  # a tuple of tensors: kept as the list of their ids
        names.ids[var] = [names[f] for f in value.fields]
        return []
    if isinstance(value, relax.TupleGetItem):
        names.ids[var] = names[value.tuple_value][value.index]
        return []
    if not isinstance(value, relax.Call):
        raise WebrtError(f"internal: unsupported binding {var.name} = {type(value).__name__}")
    op = value.op
    if isinstance(op, tvm.ir.GlobalVar):
        tensors, scalars = [], []
        for arg in value.args:
            if isinstance(arg, relax.ShapeExpr):
                scalars.extend(expr_to_json(v) for v in arg.values)
            elif isinstance(getattr(arg, "ty", None), relax.TensorType):
                tensors.append(names[arg])
            else:  # a scalar: an integer expression over the entry's shape variables
                scalars.append(expr_to_json(arg))
        names.define(var)
        return [{"op": "call", "func": op.name_hint, "args": tensors, "scalars": scalars}]
    kind = op.name
    vid = names.define(var)
    if kind == "relax.memory.alloc_storage":
        return [{"op": "storage", "id": vid, "bytes": expr_to_json(value.args[0].values[0])}]
    if kind == "relax.memory.alloc_tensor":
        return [{"op": "tensor", "id": vid, "storage": names[value.args[0]],
                 "offset": expr_to_json(value.args[1]), "shape": shape_to_json(var.ty.shape),
                 "dtype": str(var.ty.dtype)}]
    if kind == "relax.builtin.alloc_tensor":
        return [{"op": "alloc", "id": vid, "shape": shape_to_json(var.ty.shape), "dtype": str(var.ty.dtype)}]
    if kind == "relax.reshape":
        return [{"op": "view", "id": vid, "source": names[value.args[0]], "shape": shape_to_json(var.ty.shape)}]
    raise WebrtError(f"internal: the plan cannot run operator {kind}")
