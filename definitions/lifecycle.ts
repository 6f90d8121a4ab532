import type { FieldError } from './errors.ts'
import { MAX_PENDING_DELAYS, MAX_STATES } from './lifecycle-limits.ts'
import { checkSelfReference, type AssignSite } from './lifecycle-assigns.ts'

/**
 * A resource lifecycle: a JSON-serialisable XState machine config. Only declarative parts are
 * allowed, so no user code runs in the gateway or the workers:
 * `id, initial, context, states, on, after, type: 'final' | 'parallel', tags, entry, exit,
 * description, meta`, and the actions of `ACTION_TYPES`.
 */
export type LifecycleConfig = Record<string, unknown>

/** Built-in actions. `assign` sets context keys from expressions (see `evaluate` in the actor host). */
export const ACTION_TYPES = ['assign'] as const

const STATE_KEYS = new Set([
  'id',
  'initial',
  'states',
  'on',
  'after',
  'type',
  'tags',
  'entry',
  'exit',
  'description',
  'meta',
])
const ROOT_KEYS = new Set([...STATE_KEYS, 'context', 'version'])
const TRANSITION_KEYS = new Set(['target', 'actions', 'description', 'reenter', 'meta'])
const EXPRESSION_KEYS = new Set(['$event', '$context', '$inc', '$append', '$literal'])
const MAX_DELAY_MS = 30 * 24 * 3600 * 1000

/** The lifecycle resources get when their definition has none. */
export const DEFAULT_LIFECYCLE: LifecycleConfig = {
  id: 'resource',
  initial: 'pending',
  context: {},
  states: {
    pending: { on: { START: 'running', SUCCEED: 'succeeded', FAIL: 'failed' } },
    running: { on: { SUCCEED: 'succeeded', FAIL: 'failed' } },
    succeeded: { type: 'final' },
    failed: { type: 'final' },
    cancelled: { type: 'final' },
  },
  on: { CANCEL: '.cancelled' },
}

interface StateInfo {
  readonly path: string[]
  readonly pointer: string
  readonly node: Record<string, unknown>
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)
const asList = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value]
const escape = (segment: string): string => segment.replace(/~/g, '~0').replace(/\//g, '~1')

/** Checks a lifecycle; returns every problem with a JSON pointer under `prefix`. */
export function checkLifecycle(config: unknown, prefix = '/lifecycle'): FieldError[] {
  const errors: FieldError[] = []
  const error = (path: string, message: string): void => void errors.push({ path, message })
  if (!isObject(config)) return [{ path: prefix, message: 'must be an object (an XState machine config)' }]
  if (config.context !== undefined && !isObject(config.context)) error(`${prefix}/context`, 'must be an object')

  const states: StateInfo[] = []
  const ids = new Map<string, string[]>()
  const collect = (node: Record<string, unknown>, path: string[], pointer: string, root: boolean): void => {
    states.push({ path, pointer, node })
    for (const key of Object.keys(node))
      if (!(root ? ROOT_KEYS : STATE_KEYS).has(key))
        error(
          `${pointer}/${escape(key)}`,
          `is not a supported lifecycle key (use ${[...(root ? ROOT_KEYS : STATE_KEYS)].join(', ')})`,
        )
    if (typeof node.id === 'string') ids.set(node.id, path)
    if (node.type !== undefined && !['final', 'parallel', 'compound', 'atomic'].includes(node.type as string))
      error(`${pointer}/type`, 'must be final, parallel, compound or atomic')
    if (node.tags !== undefined && !(Array.isArray(node.tags) && node.tags.every((t) => typeof t === 'string')))
      error(`${pointer}/tags`, 'must be an array of strings')
    if (node.states === undefined) {
      if (node.initial !== undefined) error(`${pointer}/initial`, 'is set but the state has no child states')
      if (root) error(`${pointer}/states`, 'is required')
      return
    }
    if (!isObject(node.states) || Object.keys(node.states).length === 0)
      return error(`${pointer}/states`, 'must be an object with at least one state')
    if (node.type !== 'parallel') {
      if (typeof node.initial !== 'string') error(`${pointer}/initial`, 'is required: name the first child state')
      else if (!(node.initial in node.states))
        error(
          `${pointer}/initial`,
          `names no child state: ${node.initial} is not one of ${Object.keys(node.states).join(', ')}`,
        )
    }
    for (const [name, child] of Object.entries(node.states)) {
      const childPointer = `${pointer}/states/${escape(name)}`
      if (name.includes('.') || name.startsWith('#') || name === '')
        error(childPointer, "a state name must be non-empty and contain no '.' or '#'")
      if (!isObject(child)) error(childPointer, 'must be an object')
      else if (states.length < MAX_STATES) collect(child, [...path, name], childPointer, false)
      else error(childPointer, `a lifecycle has at most ${MAX_STATES} states`)
    }
  }
  collect(config, [], prefix, true)

  const byPath = new Map(states.map((s) => [s.path.join('.'), s]))
  const resolve = (from: string[], target: string): boolean => {
    let base: string[]
    let rest: string
    if (target.startsWith('#')) {
      const [id, ...tail] = target.slice(1).split('.')
      const found = ids.get(id!)
      if (!found) return false
      base = found
      rest = tail.join('.')
    } else if (target.startsWith('.')) {
      base = from
      rest = target.slice(1)
    } else {
      base = from.slice(0, -1)
      rest = target
    }
    const full = rest === '' ? base : [...base, ...rest.split('.')]
    return byPath.has(full.join('.'))
  }

  const assigns: AssignSite[] = []
  const checkActions = (actions: unknown, pointer: string): void => {
    asList(actions).forEach((action, i) => {
      const at = Array.isArray(actions) ? `${pointer}/${i}` : pointer
      const type = typeof action === 'string' ? action : isObject(action) ? action.type : undefined
      if (typeof type !== 'string' || !(ACTION_TYPES as readonly string[]).includes(type)) {
        return error(
          at,
          `unknown action ${JSON.stringify(type)}: the lifecycle vocabulary is ${ACTION_TYPES.join(', ')}`,
        )
      }
      if (type === 'assign') {
        const params = isObject(action) ? action.params : undefined
        if (!isObject(params) || Object.keys(params).length === 0)
          return error(`${at}/params`, 'assign needs params: { contextKey: expression }')
        for (const [key, expression] of Object.entries(params)) {
          checkExpression(expression, `${at}/params/${escape(key)}`)
          assigns.push({ key, expression, pointer: `${at}/params/${escape(key)}` })
        }
      }
    })
  }
  const checkExpression = (expression: unknown, pointer: string): void => {
    if (!isObject(expression) || !Object.keys(expression).some((k) => k.startsWith('$'))) return
    const keys = Object.keys(expression)
    if (keys.length !== 1 || !EXPRESSION_KEYS.has(keys[0]!))
      return error(pointer, `an expression is one of ${[...EXPRESSION_KEYS].map((k) => `{"${k}": …}`).join(', ')}`)
    const [key] = keys as [string]
    const value = expression[key]
    if ((key === '$event' || key === '$context') && typeof value !== 'string')
      error(`${pointer}/${escape(key)}`, 'must be a dot path string')
    if (key === '$inc' && typeof value !== 'number') error(`${pointer}/$inc`, 'must be a number')
    if (key === '$append') checkExpression(value, `${pointer}/$append`)
  }
  const checkTransitions = (value: unknown, pointer: string, from: string[]): void => {
    asList(value as unknown[]).forEach((transition, i) => {
      const at = Array.isArray(value) ? `${pointer}/${i}` : pointer
      if (typeof transition === 'string') {
        if (!resolve(from, transition)) error(at, `unknown target state ${JSON.stringify(transition)}`)
        return
      }
      if (!isObject(transition)) return error(at, 'must be a target state name or { target?, actions? }')
      for (const key of Object.keys(transition)) {
        if (key === 'guard' || key === 'cond')
          error(`${at}/${key}`, 'guards are not supported in declarative lifecycles')
        else if (!TRANSITION_KEYS.has(key))
          error(`${at}/${escape(key)}`, `is not a transition key (use ${[...TRANSITION_KEYS].join(', ')})`)
      }
      asList(transition.target as string | string[] | undefined).forEach((target, j) => {
        const targetPointer = Array.isArray(transition.target) ? `${at}/target/${j}` : `${at}/target`
        if (typeof target !== 'string') error(targetPointer, 'must be a state name')
        else if (!resolve(from, target)) error(targetPointer, `unknown target state ${JSON.stringify(target)}`)
      })
      if (transition.actions !== undefined) checkActions(transition.actions, `${at}/actions`)
    })
  }

  for (const { path, pointer, node } of states) {
    if (node.type === 'final' && (node.on !== undefined || node.after !== undefined || node.states !== undefined))
      error(pointer, 'a final state has no on, after or child states')
    if (node.on !== undefined) {
      if (!isObject(node.on)) error(`${pointer}/on`, 'must map event types to transitions')
      else
        for (const [event, transitions] of Object.entries(node.on)) {
          if (event.startsWith('xstate.') || event === '*' || event === '')
            error(`${pointer}/on/${escape(event)}`, 'event types may not be empty, * or start with xstate.')
          checkTransitions(transitions, `${pointer}/on/${escape(event)}`, path)
        }
    }
    if (node.after !== undefined) {
      if (!isObject(node.after)) error(`${pointer}/after`, 'must map delays in milliseconds to transitions')
      else
        for (const [delay, transitions] of Object.entries(node.after)) {
          const ms = Number(delay)
          if (!/^[0-9]+$/.test(delay) || ms < 1 || ms > MAX_DELAY_MS)
            error(
              `${pointer}/after/${escape(delay)}`,
              `a delay is a whole number of milliseconds from 1 to ${MAX_DELAY_MS}`,
            )
          checkTransitions(transitions, `${pointer}/after/${escape(delay)}`, path)
        }
    }
    if (node.entry !== undefined) checkActions(node.entry, `${pointer}/entry`)
    if (node.exit !== undefined) checkActions(node.exit, `${pointer}/exit`)
  }
  if (states.length <= MAX_STATES) checkPendingDelays(config, prefix, error)
  for (const problem of checkSelfReference(assigns)) error(problem.path, problem.message)
  return errors
}

/**
 * Refuses a lifecycle that could have more than `MAX_PENDING_DELAYS` delays pending at once:
 * a state's own `after` delays, or those of a state and of the child states and parallel regions
 * active with it. Each excess is reported once, at the deepest state where it arises.
 */
function checkPendingDelays(
  config: Record<string, unknown>,
  prefix: string,
  error: (path: string, message: string) => void,
): void {
  /** The most delays pending at once while `node` is active; undefined once an excess was reported. */
  const pending = (node: Record<string, unknown>, pointer: string): number | undefined => {
    const own = isObject(node.after) ? Object.keys(node.after).length : 0
    const children = isObject(node.states)
      ? Object.entries(node.states)
          .filter((entry): entry is [string, Record<string, unknown>] => isObject(entry[1]))
          .map(([name, child]) => pending(child, `${pointer}/states/${escape(name)}`))
      : []
    if (own > MAX_PENDING_DELAYS) {
      error(
        `${pointer}/after`,
        `a state has at most ${MAX_PENDING_DELAYS} \`after\` delays (this one has ${own}): each pending delay is a timer key written in the actor's etcd transaction`,
      )
      return undefined
    }
    if (children.some((count) => count === undefined)) return undefined
    const counts = children as number[]
    const total = own + (node.type === 'parallel' ? counts.reduce((a, b) => a + b, 0) : Math.max(0, ...counts))
    if (total <= MAX_PENDING_DELAYS) return total
    error(
      pointer,
      `${total} \`after\` delays can be pending at once while this state is active (its own and those of the child states and parallel regions active with it); at most ${MAX_PENDING_DELAYS} can, so that one commit stays within etcd's 128 operations per transaction`,
    )
    return undefined
  }
  pending(config, prefix)
}
