import { actorLimitsFromEnv } from '../../runtime/config.ts'
import { DEFAULT_ACTOR_LIMITS, jsonBytes, type ActorLimits } from '../../definitions/lifecycle-limits.ts'
import type { ActorRecord } from '../../runtime/actor-record.ts'

let configured: ActorLimits | undefined

/** The limits this process applies: set by `setActorLimits`, else from the environment, else the defaults. */
export function actorLimits(): ActorLimits {
  return (configured ??= { ...DEFAULT_ACTOR_LIMITS, ...actorLimitsFromEnv() })
}

/** Sets the limits of this process (an embedding or a test); what is omitted keeps its current value. */
export function setActorLimits(limits: Partial<ActorLimits>): void {
  configured = { ...actorLimits(), ...limits }
}

/** Why a context is too big to keep, or undefined. */
export function contextProblem(context: unknown, limits: ActorLimits = actorLimits()): string | undefined {
  const bytes = jsonBytes(context)
  return bytes > limits.maxContextBytes
    ? `its context would be ${bytes} bytes, over the limit of ${limits.maxContextBytes} bytes (CONVEYOR_MAX_CONTEXT_BYTES)`
    : undefined
}

/** Why a record is too big to store, or undefined: its context first, then the whole record. */
export function recordProblem(record: ActorRecord, limits: ActorLimits = actorLimits()): string | undefined {
  const context = contextProblem(record.snapshot.context, limits)
  if (context) return context
  const bytes = jsonBytes(record)
  return bytes > limits.maxRecordBytes
    ? `its record would be ${bytes} bytes, over the limit of ${limits.maxRecordBytes} bytes (CONVEYOR_MAX_RECORD_BYTES)`
    : undefined
}
