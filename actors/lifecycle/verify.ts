import { initialTransition, type AnyStateMachine } from 'xstate'
import type { ActorRecord } from '../../runtime/actor-record.ts'
import type { ConveyorEvent } from '../../definitions/objects.ts'
import { applyEvent, persist } from './apply-event.ts'
import { stateString } from './machine.ts'

const UNLIMITED = { maxContextBytes: Infinity, maxRecordBytes: Infinity }

/** Where a rebuilt actor first disagrees with its history or with etcd. */
export interface Divergence {
  /** The actor sequence (`seq`) of the event where it diverges, or 0 for the end state. */
  readonly seq: number
  readonly event?: ConveyorEvent['event']
  readonly expected: unknown
  readonly got: unknown
  readonly reason: string
}

/** What folding a resource's history through its machine gave, beside what etcd holds. */
export interface Verification {
  readonly ok: boolean
  readonly type: string
  readonly name: string
  readonly runid: string
  /** `transitioned` events of the current run that were folded. */
  readonly events: number
  readonly rebuilt: { readonly state: string; readonly context: unknown; readonly seq: number }
  readonly stored: { readonly state: string; readonly context: unknown; readonly seq: number }
  readonly divergence?: Divergence
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)

/**
 * Rebuilds an actor from the start of its run by applying each `transitioned` event of its
 * history, in `seq` order, with the same pure step the workers use, and compares every step's
 * target and the end state with what etcd holds.
 */
export function verifyActor(
  machine: AnyStateMachine,
  record: ActorRecord,
  history: readonly ConveyorEvent[],
): Verification {
  const [initial] = initialTransition(machine)
  let rebuilt: ActorRecord = {
    ...record,
    state: stateString(initial.value),
    snapshot: persist(machine, initial),
    seq: 0,
    inboxSeq: 0,
    recentIds: [],
    timers: [],
  }
  const transitions = history.filter(
    (e) => e.kind === 'transitioned' && e.uid === record.uid && e.runid === record.runid,
  )
  const seen = new Set<number>()
  const ordered = transitions.filter((e) => !seen.has(e.seq!) && seen.add(e.seq!)).sort((a, b) => a.seq! - b.seq!)
  const result = (divergence?: Divergence): Verification => ({
    ok: divergence === undefined,
    type: record.type,
    name: record.name,
    runid: record.runid,
    events: ordered.length,
    rebuilt: { state: rebuilt.state, context: rebuilt.snapshot.context, seq: rebuilt.seq },
    stored: { state: record.state, context: record.snapshot.context, seq: record.seq },
    ...(divergence ? { divergence } : {}),
  })
  for (const event of ordered) {
    const expectedSeq = rebuilt.seq + 1
    if (event.seq !== expectedSeq)
      return result({
        seq: expectedSeq,
        expected: `event ${expectedSeq}`,
        got: `event ${event.seq}`,
        reason: `the history has no transitioned event ${expectedSeq} (missing or out of order)`,
      })
    if (event.from !== rebuilt.state)
      return result({
        seq: event.seq,
        event: event.event,
        expected: event.from,
        got: rebuilt.state,
        reason: `event ${event.seq} was applied in state ${event.from}, the rebuild is in ${rebuilt.state}`,
      })
    // What was committed is replayed as it was, whatever the size limits are now.
    const applied = applyEvent(
      machine,
      rebuilt,
      { ...(event.event ?? { type: '' }), id: '' },
      Date.parse(event.time),
      undefined,
      UNLIMITED,
    )
    if (applied.kind !== 'applied')
      return result({
        seq: event.seq,
        event: event.event,
        expected: event.to,
        got: rebuilt.state,
        reason: `event ${event.seq} (${event.event?.type}) is not accepted in state ${rebuilt.state} by the machine`,
      })
    rebuilt = applied.record
    if (applied.to !== event.to)
      return result({
        seq: event.seq,
        event: event.event,
        expected: event.to,
        got: applied.to,
        reason: `event ${event.seq} (${event.event?.type}) leads to ${applied.to}, the history says ${event.to}`,
      })
  }
  if (rebuilt.seq !== record.seq)
    return result({
      seq: rebuilt.seq + 1,
      expected: record.seq,
      got: rebuilt.seq,
      reason: `etcd holds ${record.seq} applied events, the history ${rebuilt.seq}`,
    })
  if (rebuilt.state !== record.state)
    return result({
      seq: 0,
      expected: record.state,
      got: rebuilt.state,
      reason: `the rebuilt state ${rebuilt.state} differs from the stored ${record.state}`,
    })
  if (!same(rebuilt.snapshot.context, record.snapshot.context))
    return result({
      seq: 0,
      expected: record.snapshot.context,
      got: rebuilt.snapshot.context,
      reason: 'the rebuilt context differs from the stored one',
    })
  return result()
}
