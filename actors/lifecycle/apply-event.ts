import {
  createActor,
  type AnyActorScope,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  type EventObject,
} from 'xstate'
import type { ActorEvent, ActorRecord, DurableTimer, PersistedSnapshot } from '../../runtime/actor-record.ts'
import { RECENT_IDS } from '../../runtime/actor-record.ts'
import type { ActorLimits } from '../../definitions/lifecycle-limits.ts'
import { actorLimits, recordProblem } from './limits.ts'
import { stateString } from './machine.ts'

/** What applying one event did. */
export type EventResult =
  | {
      readonly kind: 'applied'
      readonly record: ActorRecord
      readonly from: string
      readonly to: string
      readonly added: readonly DurableTimer[]
      readonly removed: readonly DurableTimer[]
    }
  | {
      readonly kind: 'rejected'
      /** `limit`: applying it would make the context or the record bigger than the limits allow. */
      readonly reason: 'final' | 'not-accepted' | 'limit'
      readonly state: string
      /** Why, for `limit`. */
      readonly detail?: string
    }
  | { readonly kind: 'duplicate' }

/** The problem type and sentence of a rejected event, as the sender's 409 carries them. */
export function describeRejection(
  result: Extract<EventResult, { kind: 'rejected' }>,
  record: { readonly type: string; readonly name: string },
  eventType: string,
): { code: string; detail: string } {
  const resource = `resource ${record.type}/${record.name}`
  if (result.reason === 'final')
    return { code: 'actor-done', detail: `${resource} is in final state ${result.state} and accepts no more events` }
  if (result.reason === 'limit')
    return { code: 'limit-exceeded', detail: `${resource} refused ${eventType}: ${result.detail}; nothing was changed` }
  return {
    code: 'event-not-accepted',
    detail: `${resource} is in state ${result.state}, which does not accept ${eventType}`,
  }
}

export interface ActionLike {
  readonly type: string
  readonly params?: {
    readonly delay?: number
    readonly id?: string
    readonly event?: { type: string }
    readonly sendId?: string
  }
}

/** Timers the actions schedule and cancel, applied to the record's pending timers. */
export function applyTimerActions(
  timers: readonly DurableTimer[],
  actions: readonly ActionLike[],
  now: number,
  done: boolean,
): { timers: DurableTimer[]; added: DurableTimer[]; removed: DurableTimer[] } {
  let next = [...timers]
  for (const action of actions) {
    const params = action.params
    if (action.type === 'xstate.cancel' && params?.sendId) next = next.filter((t) => t.id !== params.sendId)
    else if (action.type === 'xstate.raise' && typeof params?.delay === 'number' && params.event) {
      const id = params.id ?? params.event.type
      next = [...next.filter((t) => t.id !== id), { id, dueAt: now + params.delay, event: params.event }]
    }
  }
  if (done) next = []
  return {
    timers: next,
    added: next.filter((t) => !timers.includes(t)),
    removed: timers.filter((t) => !next.includes(t)),
  }
}

/** Live snapshots of persisted ones this process produced or restored, so a hot actor is not re-resolved per event. */
const restored = new WeakMap<PersistedSnapshot, AnyMachineSnapshot>()

export function restore(machine: AnyStateMachine, snapshot: PersistedSnapshot): AnyMachineSnapshot {
  let live = restored.get(snapshot)
  if (live?.machine !== machine) {
    live = machine.resolveState(snapshot as never)
    restored.set(snapshot, live)
  }
  return live
}

/**
 * One inert actor scope per machine, reused by every step. XState's `transition()` helper builds
 * a fresh actor (which computes the machine's initial state) on every call; our lifecycles spawn
 * nothing, so a shared scope whose executor collects into the current call's list is equivalent.
 */
const scopes = new WeakMap<AnyStateMachine, { scope: AnyActorScope; collected: unknown[] }>()

function pureTransition(
  machine: AnyStateMachine,
  snapshot: AnyMachineSnapshot,
  event: EventObject,
): [AnyMachineSnapshot, unknown[]] {
  let entry = scopes.get(machine)
  if (!entry) {
    const self = createActor(machine)
    const holder: { scope: AnyActorScope; collected: unknown[] } = { collected: [], scope: undefined as never }
    holder.scope = {
      self,
      system: self.system,
      id: '',
      sessionId: '',
      logger: () => {},
      defer: () => {},
      emit: () => {},
      stopChild: () => {},
      actionExecutor: (action: unknown) => void holder.collected.push(action),
    } as unknown as AnyActorScope
    scopes.set(machine, (entry = holder))
  }
  const collected: unknown[] = []
  entry.collected = collected
  const next = machine.transition(snapshot, event, entry.scope) as AnyMachineSnapshot
  return [next, collected]
}

export function persist(machine: AnyStateMachine, snapshot: AnyMachineSnapshot): PersistedSnapshot {
  return machine.getPersistedSnapshot(snapshot) as unknown as PersistedSnapshot
}

/**
 * Applies one event to an actor record with XState's pure `transition()`: nothing is executed,
 * the caller persists the result and then performs its effects (emit, timers, replies). An event
 * whose result would exceed `limits` (the context's or the record's size) is rejected, unapplied.
 */
export function applyEvent(
  machine: AnyStateMachine,
  record: ActorRecord,
  event: ActorEvent,
  now: number,
  inboxSeq?: number,
  limits: ActorLimits = actorLimits(),
): EventResult {
  if (event.id && record.recentIds.includes(event.id)) return { kind: 'duplicate' }
  const current = restore(machine, record.snapshot)
  const from = stateString(current.value)
  if (current.status !== 'active') return { kind: 'rejected', reason: 'final', state: from }
  const [next, actions] = pureTransition(machine, current, event)
  // transition() returns the same snapshot when no transition is enabled; only then is can() asked
  // (a targetless transition without actions is accepted but changes nothing).
  if (next === current && (event.type.startsWith('xstate.after.') || !current.can(event)))
    return { kind: 'rejected', reason: 'not-accepted', state: from }
  const timers = applyTimerActions(record.timers, actions as unknown as ActionLike[], now, next.status !== 'active')
  const persisted = persist(machine, next)
  restored.set(persisted, next)
  const recentIds = event.id ? [...record.recentIds, event.id].slice(-RECENT_IDS) : record.recentIds
  const applied: ActorRecord = {
    ...record,
    state: stateString(next.value),
    snapshot: persisted,
    seq: record.seq + 1,
    inboxSeq: inboxSeq ?? record.inboxSeq,
    recentIds,
    timers: timers.timers,
    updatedAt: new Date(now).toISOString(),
  }
  // Only an assign grows a record beyond a few fixed-size fields: the sizes are measured then.
  if (next.context !== current.context) {
    const problem = recordProblem(applied, limits)
    if (problem) return { kind: 'rejected', reason: 'limit', state: from, detail: problem }
  }
  return {
    kind: 'applied',
    from,
    to: stateString(next.value),
    added: timers.added,
    removed: timers.removed,
    record: applied,
  }
}

/** The events the actor accepts in its current state (what `can()` allows), internal ones excluded. */
export function acceptedEvents(machine: AnyStateMachine, record: ActorRecord): string[] {
  const current = restore(machine, record.snapshot)
  if (current.status !== 'active') return []
  const all = (machine as unknown as { events: string[] }).events
  return all.filter((type) => !type.startsWith('xstate.') && current.can({ type }))
}
