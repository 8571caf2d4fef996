// Evaluates the artifact's shape expressions (docs/ARTIFACT.md, "Shape expressions"): an integer,
// a variable name, or [op, ...operands]: arithmetic, comparisons (0/1), not, and select.

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
  lt: (a, b) => +(a < b),
  le: (a, b) => +(a <= b),
  gt: (a, b) => +(a > b),
  ge: (a, b) => +(a >= b),
  eq: (a, b) => +(a === b),
  ne: (a, b) => +(a !== b),
  and: (a, b) => +(a && b),
  or: (a, b) => +(a || b),
  not: (a) => +!a,
};

export function evaluate(expr, env) {
  if (typeof expr === "number") return expr;
  if (typeof expr === "string") {
    const value = env[expr];
    if (value === undefined) throw new Error(`shape variable ${expr} is not bound`);
    return value;
  }
  const [op, ...operands] = expr;
  if (op === "select") return evaluate(operands[0], env) ? evaluate(operands[1], env) : evaluate(operands[2], env);
  const fn = OPS[op];
  if (!fn) throw new Error(`unknown shape operator ${op}`);
  return fn(...operands.map((x) => evaluate(x, env)));
}

export function evaluateShape(shape, env) {
  return shape.map((dim) => evaluate(dim, env));
}
