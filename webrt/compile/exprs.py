"""Shape expressions as JSON, evaluated by web/shape_expr.js.

An expression is an integer, a variable name (string), or [op, operand, ...] with op one of
add sub mul floordiv floormod div mod min max (two operands), lt le gt ge eq ne and or (two
operands, giving 0 or 1), not (one) and select (condition, then, else).
"""

from __future__ import annotations

from tvm import tirx

from ..errors import WebrtError

_BINARY = {
    tirx.Add: "add", tirx.Sub: "sub", tirx.Mul: "mul", tirx.FloorDiv: "floordiv",
    tirx.FloorMod: "floormod", tirx.Div: "div", tirx.Mod: "mod", tirx.Min: "min", tirx.Max: "max",
    tirx.LT: "lt", tirx.LE: "le", tirx.GT: "gt", tirx.GE: "ge", tirx.EQ: "eq", tirx.NE: "ne",
    tirx.And: "and", tirx.Or: "or",
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
    if isinstance(expr, tirx.Not):
        return ["not", expr_to_json(expr.a, inline)]
    if isinstance(expr, tirx.Select):
        return ["select", expr_to_json(expr.condition, inline), expr_to_json(expr.true_value, inline),
                expr_to_json(expr.false_value, inline)]
    op = _BINARY.get(type(expr))
    if op is None:
        raise WebrtError(f"internal: shape expression {expr} ({type(expr).__name__}) has no JSON form")
    return [op, expr_to_json(expr.a, inline), expr_to_json(expr.b, inline)]


def shape_to_json(shape, inline: dict | None = None) -> list:
    return [expr_to_json(dim, inline) for dim in shape]
