// Evaluates the artifact's shape expressions (docs/ARTIFACT.md, "Shape expressions"):
// an integer, a variable name, or [op, a, b] with op in add sub mul floordiv floormod div mod min max.

const OPS = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  floordiv: (a, b) => Math.floor(a / b),
  floormod: (a, b) => a - Math.floor(a / b) * b,
  div: (a, b) => Math.trunc(a / b),
  mod: (a, b) => a % b,
  min: Math.min,
  max: Math.max,
};

export function evaluate(expr, env) {
  if (typeof expr === "number") return expr;
  if (typeof expr === "string") {
    const value = env[expr];
    if (value === undefined) throw new Error(`shape variable ${expr} is not bound`);
    return value;
  }
  const [op, a, b] = expr;
  const fn = OPS[op];
  if (!fn) throw new Error(`unknown shape operator ${op}`);
  return fn(evaluate(a, env), evaluate(b, env));
}

export function evaluateShape(shape, env) {
  return shape.map((dim) => evaluate(dim, env));
}
