import { isValidName, NAME_PATTERN } from '../../definitions/names.ts'
import type { DriverDefinition } from './types.ts'

const DRIVER = Symbol.for('conveyor.driver')
const EVENT_KINDS = new Set(['created', 'updated', 'deleted'])

/** Declares a driver. The shape is checked now: a wrong property throws a `TypeError` naming it. */
export function defineDriver<const D extends DriverDefinition>(definition: D): D {
  if (typeof definition !== 'object' || definition === null) throw new TypeError('defineDriver expects an object')
  if (!isValidName(definition.name))
    throw new TypeError(
      `driver.name must match ${NAME_PATTERN} and be at most 63 characters, got ${JSON.stringify(definition.name)}`,
    )
  if (!Array.isArray(definition.resources))
    throw new TypeError(
      'driver.resources must be an array of resource type names (empty for a driver that only runs pipeline steps)',
    )
  definition.resources.forEach((type, i) => {
    if (!isValidName(type))
      throw new TypeError(`driver.resources[${i}] must match ${NAME_PATTERN}, got ${JSON.stringify(type)}`)
  })
  if (typeof definition.reconcile !== 'function') throw new TypeError('driver.reconcile must be a function')
  const concurrency = definition.concurrency
  if (concurrency !== undefined && (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000))
    throw new TypeError(`driver.concurrency must be an integer from 1 to 1000, got ${String(concurrency)}`)
  definition.events?.forEach((kind, i) => {
    if (!EVENT_KINDS.has(kind))
      throw new TypeError(`driver.events[${i}] must be created, updated or deleted, got ${JSON.stringify(kind)}`)
  })
  Object.defineProperty(definition, DRIVER, { value: true, enumerable: false })
  return definition
}

export function isDriverDefinition(value: unknown): value is DriverDefinition {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[DRIVER] === true
}
