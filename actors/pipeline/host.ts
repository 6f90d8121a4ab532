import type { AnyStateMachine } from 'xstate'
import type { ActorRecord } from '../../runtime/actor-record.ts'
import type { OutboxMessage } from '../../runtime/outbox.ts'
import { subjects } from '../../runtime/keys.ts'
import type { ConveyorEvent } from '../../definitions/objects.ts'
import { applyEvent } from '../lifecycle/apply-event.ts'
import { advanceRun, cancelRun, STEP_RESULT, type RunEffects, type RunState } from './run.ts'
import { runMessages } from './effects.ts'

/** A record after a run change, and the messages the commit must carry out. */
export interface RunOutcome {
  readonly record: ActorRecord
  readonly messages: OutboxMessage[]
}

/** The `transitioned` event of one applied lifecycle step. */
export function transitionedEvent(
  record: ActorRecord,
  from: string,
  to: string,
  event: { readonly type: string; readonly [key: string]: unknown },
): ConveyorEvent {
  return {
    kind: 'transitioned',
    uid: record.uid,
    revision: 0,
    time: record.updatedAt,
    type: record.type,
    name: record.name,
    runid: record.runid,
    from,
    to,
    event,
    seq: record.seq,
  }
}

const LIFECYCLE_EVENT = { succeeded: 'SUCCEED', failed: 'FAIL' } as const

function withRun(
  record: ActorRecord,
  state: RunState & { effects: RunEffects },
  machine: AnyStateMachine,
  now: number,
): RunOutcome {
  let next: ActorRecord = { ...record, run: state.run, timers: state.timers }
  const messages = runMessages(next, state.effects, now)
  const finished = state.effects.finished
  // The lifecycle follows the run's end when it accepts SUCCEED / FAIL (the built-in one does).
  if (finished === 'succeeded' || finished === 'failed') {
    const event = { type: LIFECYCLE_EVENT[finished], message: state.run.message ?? '' }
    const result = applyEvent(machine, next, { ...event, id: '' }, now)
    if (result.kind === 'applied') {
      next = { ...result.record, run: state.run }
      messages.push({
        subject: subjects.outcome(next.type, next.name, 'transitioned'),
        event: transitionedEvent(next, result.from, result.to, event),
      })
    }
  }
  return { record: next, messages }
}

/** Applies a step result or step timer to the record's run; undefined when it no longer matters. */
export function applyRunEvent(
  machine: AnyStateMachine,
  record: ActorRecord,
  event: { readonly type: string; readonly [key: string]: unknown },
  now: number,
): RunOutcome | undefined {
  if (!record.run || (event.type === STEP_RESULT && event.runid !== record.runid)) return undefined
  const state = advanceRun({ run: record.run, timers: record.timers }, event, now)
  return state ? withRun(record, state, machine, now) : undefined
}

/** After a lifecycle step: a lifecycle that reached a final state (CANCEL, say) ends a running run. */
export function settleRun(machine: AnyStateMachine, record: ActorRecord, now: number): RunOutcome | undefined {
  if (record.run?.status !== 'running' || record.snapshot.status === 'active') return undefined
  return withRun(
    record,
    cancelRun({ run: record.run, timers: record.timers }, `resource reached final state ${record.state}`, now),
    machine,
    now,
  )
}
