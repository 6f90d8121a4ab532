import { createHash } from 'node:crypto'
import { assign, createMachine, type AnyStateMachine, type StateValue } from 'xstate'
import { DEFAULT_LIFECYCLE, type LifecycleConfig } from '../../definitions/lifecycle.ts'
import { assignAll } from './expressions.ts'

/** The id under which a lifecycle is stored: a hash of its canonical JSON. */
export function lifecycleId(config: LifecycleConfig): string {
  return createHash('sha256').update(canonicalJson(config)).digest('hex').slice(0, 24)
}

export const DEFAULT_LIFECYCLE_ID = lifecycleId(DEFAULT_LIFECYCLE)

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (typeof value === 'object' && value !== null) {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`)
      .join(',')}}`
  }
  return JSON.stringify(value)
}

/** Builds the XState machine of a (checked) lifecycle, with the declarative actions bound. */
export function buildMachine(config: LifecycleConfig): AnyStateMachine {
  const { version: _version, ...machineConfig } = config
  return createMachine({ id: 'resource', ...machineConfig } as never, {
    actions: {
      assign: assign(({ context, event }, params: Record<string, unknown>) =>
        assignAll(params, { context: context as Record<string, unknown>, event: event as Record<string, unknown> }),
      ) as never,
    },
  })
}

const cache = new Map<string, AnyStateMachine>()
const CACHE_LIMIT = 256

/** Machines are built once per lifecycle id (LRU of `CACHE_LIMIT`). */
export function machineFor(id: string, config: LifecycleConfig): AnyStateMachine {
  let machine = cache.get(id)
  if (machine) {
    cache.delete(id)
    cache.set(id, machine)
    return machine
  }
  machine = buildMachine(config)
  cache.set(id, machine)
  if (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value!)
  return machine
}

/** `running`, `build.compiling`, or `{a: x, b: y}` as `a.x|b.y` for parallel states. */
export function stateString(value: StateValue): string {
  if (typeof value === 'string') return value
  const parts = Object.entries(value).map(([key, child]) =>
    child === undefined || (typeof child === 'object' && Object.keys(child).length === 0)
      ? key
      : `${key}.${stateString(child as StateValue)}`,
  )
  return parts.join('|')
}
