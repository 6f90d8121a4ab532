/** Evaluates the declarative expressions of an `assign` action (see definitions/lifecycle.ts). */

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

export function readPath(source: unknown, path: string): unknown {
  let current = source
  for (const segment of path.split('.')) {
    if (segment === '') continue
    if (!isObject(current) && !Array.isArray(current)) return undefined
    current = (current as Record<string, unknown>)[segment]
  }
  return current
}

export interface Scope {
  readonly context: Record<string, unknown>
  readonly event: Record<string, unknown>
}

export function evaluate(expression: unknown, scope: Scope, key: string): unknown {
  if (!isObject(expression)) return structuredClone(expression)
  const [operator] = Object.keys(expression)
  if (operator === undefined || !operator.startsWith('$')) return structuredClone(expression)
  const operand = expression[operator]
  switch (operator) {
    case '$event':
      return structuredClone(readPath(scope.event, String(operand)))
    case '$context':
      return structuredClone(readPath(scope.context, String(operand)))
    case '$inc': {
      const current = Number(scope.context[key] ?? 0)
      return (Number.isFinite(current) ? current : 0) + Number(operand)
    }
    case '$append': {
      const current = scope.context[key]
      return [...(Array.isArray(current) ? current : []), evaluate(operand, scope, key)]
    }
    case '$literal':
      return structuredClone(operand)
    default:
      return undefined
  }
}

/** Applies `assign` params to a context, returning the new context. */
export function assignAll(params: Record<string, unknown>, scope: Scope): Record<string, unknown> {
  const next = { ...scope.context }
  for (const [key, expression] of Object.entries(params))
    next[key] = evaluate(expression, { context: next, event: scope.event }, key)
  return next
}
