import { buildMachine, lifecycleId } from './machine.ts'

/** What the definition store needs to know of lifecycles: their id, and a build that throws if invalid. */
export const lifecycles = {
  id: lifecycleId,
  check: (config: Record<string, unknown>): void => void buildMachine(config),
}
