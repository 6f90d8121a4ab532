import type { FieldError } from './errors.ts'

/** One `assign` param of a lifecycle: the context key it sets, its expression, and where it is. */
export interface AssignSite {
  readonly key: string
  readonly expression: unknown
  readonly pointer: string
}

/** `from` flows into `into`: `into`'s assign reads `$context` under `from`; `growing` when inside `$append`. */
interface Flow {
  readonly from: string
  readonly into: string
  readonly growing: boolean
  readonly pointer: string
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)
const operatorOf = (expression: unknown): string | undefined => {
  if (!isObject(expression)) return undefined
  const keys = Object.keys(expression)
  return keys.length === 1 && keys[0]!.startsWith('$') ? keys[0] : undefined
}

/**
 * Refuses the assigns that make a context grow with itself, every one of which could double it on
 * every event:
 * - a `$context` reference to the whole context (`""`, `"."`): it holds the key being assigned;
 * - an `$append` inside an `$append`: the inner one is the key's whole list, appended to itself;
 * - an `$append` of `$context: "k…"` into a key that `k` is itself assigned from, directly
 *   (`k` is the key) or through other assigns (`a` appends `b` while `b` copies `a`). Assigns are
 *   taken together over the whole lifecycle, whichever transitions they sit on.
 * Copies that do not append (`{"$context": "k"}` into `k`, or swaps) and appends of `$event` or
 * literals grow at most by what each event brings, which the context size limit bounds.
 */
export function checkSelfReference(assigns: readonly AssignSite[]): FieldError[] {
  const errors: FieldError[] = []
  const flows: Flow[] = []
  const visit = (expression: unknown, pointer: string, into: string, insideAppend: boolean): void => {
    const operator = operatorOf(expression)
    if (operator === undefined) return
    const operand = (expression as Record<string, unknown>)[operator]
    const at = `${pointer}/${escape(operator)}`
    if (operator === '$context' && typeof operand === 'string') {
      const from = operand.split('.').find((segment) => segment !== '')
      if (from === undefined)
        errors.push({
          path: at,
          message: `references the whole context, which holds ${JSON.stringify(into)} itself, so the value would grow with itself on every event: name the key to copy`,
        })
      else flows.push({ from, into, growing: insideAppend, pointer: at })
    } else if (operator === '$append') {
      if (operatorOf(operand) === '$append')
        errors.push({
          path: `${at}/$append`,
          message: `appends ${JSON.stringify(into)}'s own list to itself, so it grows with itself on every event`,
        })
      else visit(operand, at, into, true)
    }
  }
  for (const site of assigns) visit(site.expression, site.pointer, site.key, false)

  const into = new Map<string, Set<string>>()
  for (const flow of flows) {
    if (!into.has(flow.from)) into.set(flow.from, new Set())
    into.get(flow.from)!.add(flow.into)
  }
  /** True when a value assigned to `start` can flow (through assigns) into `goal`. */
  const flowsInto = (start: string, goal: string): boolean => {
    const seen = new Set<string>([start])
    const queue = [start]
    while (queue.length > 0) {
      const key = queue.shift()!
      if (key === goal) return true
      for (const next of into.get(key) ?? [])
        if (!seen.has(next)) {
          seen.add(next)
          queue.push(next)
        }
    }
    return false
  }
  for (const flow of flows)
    if (flow.growing && flowsInto(flow.into, flow.from))
      errors.push({
        path: flow.pointer,
        message:
          flow.from === flow.into
            ? `appends a copy of ${JSON.stringify(flow.into)} to itself, so it grows with itself on every event: append from $event or a literal`
            : `appends ${JSON.stringify(flow.from)} to ${JSON.stringify(flow.into)}, and ${JSON.stringify(flow.from)} is itself assigned from ${JSON.stringify(flow.into)}: the value grows with itself on every event`,
      })
  return errors
}

const escape = (segment: string): string => segment.replace(/~/g, '~0').replace(/\//g, '~1')
