"""Shape expressions as JSON, evaluated by web/shape_expr.js.

An expression is an integer, a variable name (string), or [op, operand, ...] with op one of
add sub mul floordiv floormod div mod min max. Division is only ever applied to non-negative
sizes here, so truncating and flooring division agree.
"""

from __future__ import annotations

from tvm import tirx

from ..errors import WebrtError

_BINARY = {
    tirx.Add: "add", tirx.Sub: "sub", tirx.Mul: "mul", tirx.FloorDiv: "floordiv",
    tirx.FloorMod: "floormod", tirx.Div: "div", tirx.Mod: "mod", tirx.Min: "min", tirx.Max: "max",
}


def expr_to_json(expr, inline: dict | None = None):
    """Serialize a PrimExpr; vars found in `inline` are replaced by their (already JSON) value."""
    inline = inline or {}
    if isinstance(expr, int):
        return expr
    if isinstance(expr, tirx.IntImm):
        return int(expr.value)
    if isinstance(expr, tirx.Var):
        return inline.get(expr, expr.name)
    if isinstance(expr, tirx.Cast):
        return expr_to_json(expr.value, inline)
    op = _BINARY.get(type(expr))
    if op is None:
        raise WebrtError(f"internal: shape expression {expr} ({type(expr).__name__}) has no JSON form")
    return [op, expr_to_json(expr.a, inline), expr_to_json(expr.b, inline)]


def shape_to_json(shape, inline: dict | None = None) -> list:
    return [expr_to_json(dim, inline) for dim in shape]
