import { initialTransition } from 'xstate'
import type { FieldError } from '../../definitions/errors.ts'
import { jsonBytes } from '../../definitions/lifecycle-limits.ts'
import { actorLimits } from './limits.ts'
import { buildMachine, lifecycleId } from './machine.ts'

/** What the definition store needs to know of lifecycles: their id, and what building one finds wrong. */
export const lifecycles = {
  id: lifecycleId,
  /** Builds the machine and its initial state (a declaratively checked config may still fail there); its problems under `/lifecycle`. */
  check: (config: Record<string, unknown>): FieldError[] => {
    let context: unknown
    try {
      context = initialTransition(buildMachine(config))[0].context
    } catch (error) {
      const message = error instanceof Error ? error.message.split('\n').join(' ') : String(error)
      return [{ path: '/lifecycle', message }]
    }
    const bytes = jsonBytes(context)
    const limit = actorLimits().maxContextBytes
    return bytes > limit
      ? [
          {
            path: '/lifecycle/context',
            message: `the initial context is ${bytes} bytes, over the limit of ${limit} bytes (CONVEYOR_MAX_CONTEXT_BYTES)`,
          },
        ]
      : []
  },
}
