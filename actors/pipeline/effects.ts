import type { OutboxMessage } from '../../runtime/outbox.ts'
import type { ActorRecord } from '../../runtime/actor-record.ts'
import { RUN_LOG, subjects } from '../../runtime/keys.ts'
import type { ConveyorEvent } from '../../definitions/objects.ts'
import type { StepDispatch, StepRun } from '../../definitions/pipeline.ts'
import type { RunEffects } from './run.ts'

/**
 * Which step a dispatch is, and its limits. The work itself (`commands`, `env`) is only in
 * `withPlan`: a driver gets it from the actor when its claim is granted, never from a message.
 */
export function dispatchOf(step: StepRun, withPlan = false): StepDispatch {
  return {
    id: step.id,
    name: step.name,
    driver: step.driver,
    attempt: step.attempt,
    ...(step.timeoutMs !== undefined ? { timeoutMs: step.timeoutMs } : {}),
    ...(withPlan && step.commands ? { commands: step.commands } : {}),
    ...(withPlan && step.env ? { env: step.env } : {}),
  }
}

/**
 * The messages that carry a run change out, written to the outbox in the commit that made it:
 * results first, then cancellations, then new dispatches, then the run's end (and its log's end
 * marker, which closes `GET /logs/pipeline/:runid`).
 */
export function runMessages(record: ActorRecord, effects: RunEffects, now: number): OutboxMessage[] {
  const run = record.run
  if (!run) return []
  const time = new Date(now).toISOString()
  const base = {
    uid: record.uid,
    revision: 0,
    time,
    type: record.type,
    name: record.name,
    runid: record.runid,
    pipeline: run.pipeline,
  }
  const messages: OutboxMessage[] = []
  for (const step of effects.reported) {
    const event: ConveyorEvent = {
      ...base,
      kind: 'step.result',
      step: { ...dispatchOf(step), status: step.status, message: step.message ?? '', data: step.data ?? {} },
    }
    messages.push({ subject: subjects.outcome(record.type, record.name, event.kind), event })
  }
  for (const step of effects.cancelled) {
    messages.push({
      subject: subjects.cancel(record.type, record.name, step.driver),
      event: {
        ...base,
        kind: 'step.cancelled',
        step: { id: step.id, name: step.name, driver: step.driver, attempt: step.attempt },
      },
    })
  }
  for (const step of effects.dispatched) {
    messages.push({
      subject: subjects.step(record.type, record.name, step.driver),
      event: { ...base, kind: 'step.dispatched', step: dispatchOf(step) },
    })
  }
  if (effects.finished) {
    const event: ConveyorEvent = {
      ...base,
      kind: 'run.finished',
      status: effects.finished,
      ...(run.message ? { event: { type: effects.finished, message: run.message } } : {}),
    }
    messages.push({ subject: subjects.outcome(record.type, record.name, event.kind), event })
    messages.push({
      subject: subjects.log(RUN_LOG, record.runid),
      logEnd: {
        id: `${record.uid}:${record.runid}:run-end`,
        success: effects.finished === 'succeeded',
        message: run.message ?? effects.finished,
      },
    })
  }
  return messages
}
