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

/** Events that may arrive ahead of their turn (out of stream order) before the fold gives up. */
const MAX_AHEAD = 10_000

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
  const fold = new VerificationFold(machine, record)
  for (const event of history) if (!fold.add(event)) break
  return fold.result()
}

/**
 * `verifyActor` one event at a time, for a history read as a stream: events are applied in `seq`
 * order as they come (duplicates skipped, a few out of order held until their turn).
 */
export class VerificationFold {
  readonly #machine: AnyStateMachine
  readonly #record: ActorRecord
  readonly #ahead = new Map<number, ConveyorEvent>()
  #rebuilt: ActorRecord
  #folded = 0
  #divergence: Divergence | undefined

  constructor(machine: AnyStateMachine, record: ActorRecord) {
    this.#machine = machine
    this.#record = record
    const [initial] = initialTransition(machine)
    this.#rebuilt = {
      ...record,
      state: stateString(initial.value),
      snapshot: persist(machine, initial),
      seq: 0,
      inboxSeq: 0,
      recentIds: [],
      timers: [],
    }
  }

  /** Folds one event of the history; false once the rebuild diverged (nothing more is needed). */
  add(event: ConveyorEvent): boolean {
    if (this.#divergence) return false
    if (event.kind !== 'transitioned' || event.uid !== this.#record.uid || event.runid !== this.#record.runid)
      return true
    if (event.seq! <= this.#rebuilt.seq || this.#ahead.has(event.seq!)) return true
    this.#ahead.set(event.seq!, event)
    if (this.#ahead.size > MAX_AHEAD)
      return this.#diverge({
        seq: this.#rebuilt.seq + 1,
        expected: `event ${this.#rebuilt.seq + 1}`,
        got: `${this.#ahead.size} later events`,
        reason: `the history has no transitioned event ${this.#rebuilt.seq + 1} among the next ${MAX_AHEAD} (missing or out of order)`,
      })
    for (let next = this.#ahead.get(this.#rebuilt.seq + 1); next; next = this.#ahead.get(this.#rebuilt.seq + 1)) {
      this.#ahead.delete(next.seq!)
      this.#folded++
      if (!this.#apply(next)) return false
    }
    return true
  }

  #diverge(divergence: Divergence): false {
    this.#divergence = divergence
    return false
  }

  #apply(event: ConveyorEvent): boolean {
    const rebuilt = this.#rebuilt
    if (event.from !== rebuilt.state)
      return this.#diverge({
        seq: event.seq!,
        event: event.event,
        expected: event.from,
        got: rebuilt.state,
        reason: `event ${event.seq} was applied in state ${event.from}, the rebuild is in ${rebuilt.state}`,
      })
    // What was committed is replayed as it was, whatever the size limits are now.
    const applied = applyEvent(
      this.#machine,
      rebuilt,
      { ...(event.event ?? { type: '' }), id: '' },
      Date.parse(event.time),
      undefined,
      UNLIMITED,
    )
    if (applied.kind !== 'applied')
      return this.#diverge({
        seq: event.seq!,
        event: event.event,
        expected: event.to,
        got: rebuilt.state,
        reason: `event ${event.seq} (${event.event?.type}) is not accepted in state ${rebuilt.state} by the machine`,
      })
    this.#rebuilt = applied.record
    if (applied.to !== event.to)
      return this.#diverge({
        seq: event.seq!,
        event: event.event,
        expected: event.to,
        got: applied.to,
        reason: `event ${event.seq} (${event.event?.type}) leads to ${applied.to}, the history says ${event.to}`,
      })
    return true
  }

  /** The verification of what was folded, the end state included. */
  result(): Verification {
    const record = this.#record
    const rebuilt = this.#rebuilt
    const done = (divergence?: Divergence): Verification => ({
      ok: divergence === undefined,
      type: record.type,
      name: record.name,
      runid: record.runid,
      events: this.#folded + this.#ahead.size,
      rebuilt: { state: rebuilt.state, context: rebuilt.snapshot.context, seq: rebuilt.seq },
      stored: { state: record.state, context: record.snapshot.context, seq: record.seq },
      ...(divergence ? { divergence } : {}),
    })
    if (this.#divergence) return done(this.#divergence)
    if (this.#ahead.size > 0) {
      const first = Math.min(...this.#ahead.keys())
      return done({
        seq: rebuilt.seq + 1,
        expected: `event ${rebuilt.seq + 1}`,
        got: `event ${first}`,
        reason: `the history has no transitioned event ${rebuilt.seq + 1} (missing or out of order)`,
      })
    }
    if (rebuilt.seq !== record.seq)
      return done({
        seq: rebuilt.seq + 1,
        expected: record.seq,
        got: rebuilt.seq,
        reason: `etcd holds ${record.seq} applied events, the history ${rebuilt.seq}`,
      })
    if (rebuilt.state !== record.state)
      return done({
        seq: 0,
        expected: record.state,
        got: rebuilt.state,
        reason: `the rebuilt state ${rebuilt.state} differs from the stored ${record.state}`,
      })
    if (!same(rebuilt.snapshot.context, record.snapshot.context))
      return done({
        seq: 0,
        expected: record.snapshot.context,
        got: rebuilt.snapshot.context,
        reason: 'the rebuilt context differs from the stored one',
      })
    return done()
  }
}
