import type { AnyStateMachine } from 'xstate'
import {
  ACTOR_RESUME,
  TOMBSTONE_EXPIRE,
  type ActorEvent,
  type ActorRecord,
  type DurableTimer,
} from '../../runtime/actor-record.ts'
import type { EventReply } from '../../runtime/inbox.ts'
import type { OutboxMessage } from '../../runtime/outbox.ts'
import { subjects } from '../../runtime/keys.ts'
import type { Resource } from '../../definitions/objects.ts'
import { acceptedEvents, applyEvent, describeRejection } from '../lifecycle/apply-event.ts'
import { applyRunEvent, settleRun, transitionedEvent } from '../pipeline/host.ts'
import { isRunEvent } from '../pipeline/run.ts'
import { applyWork, driverOfWork, isWorkRequest } from '../work/claims.ts'
import type { WorkRequest } from '../../definitions/work.ts'

/** One thing for an actor to apply: an inbox event (with its stream sequence) or a due durable timer. */
export type BatchItem =
  | {
      readonly kind: 'inbox'
      readonly event: ActorEvent
      readonly seq: number
      /** The resource uid the sender saw, when it said. */
      readonly incarnation?: string | undefined
    }
  /** A work request (claim, renewal, report) over core NATS: idempotent by its token, so not stored in the inbox. */
  /** `requester`: the driver the request's subject names; it may only ask about its own work. */
  | { readonly kind: 'request'; readonly event: WorkRequest; readonly requester: string }
  | { readonly kind: 'timer'; readonly id: string; readonly dueAt: number }

/** The answer to one inbox item, completed once the commit's revision (and, if asked for, the stored resource) is known. */
export interface BatchReply {
  /** Index of the item in the batch. */
  readonly item: number
  readonly reply: (revision: number, resource: Resource | undefined) => EventReply
}

export interface BatchInput {
  readonly type: string
  readonly name: string
  readonly machine: AnyStateMachine
  /** The actor as stored; undefined when the resource has no actor record. */
  readonly record: ActorRecord | undefined
  readonly items: readonly BatchItem[]
  readonly now: number
  /** Drivers with a live instance serving a resource type. */
  readonly servingDrivers: (type: string) => readonly string[]
}

/** What the host commits (one transaction) and then does. */
export interface BatchOutput {
  /** The record to write; undefined to delete it (an expired tombstone). */
  readonly record: ActorRecord | undefined
  /** False when nothing needs committing. */
  readonly changed: boolean
  readonly messages: readonly OutboxMessage[]
  readonly replies: readonly BatchReply[]
  /** Timer keys the batch found without a matching timer in the record (left over): delete them. */
  readonly orphanTimers: readonly { readonly dueAt: number; readonly id: string }[]
  /** Some reply needs the resource as stored. */
  readonly wantsResource: boolean
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  409: 'Conflict',
  503: 'Service Unavailable',
}

export function problem(status: number, code: string, detail: string, extra: Record<string, unknown> = {}): EventReply {
  return {
    status,
    body: { type: `urn:conveyor:problem:${code}`, title: TITLES[status] ?? 'Error', status, detail, ...extra },
  }
}

function view(record: ActorRecord, revision: number): Record<string, unknown> {
  return {
    type: record.type,
    name: record.name,
    runid: record.runid,
    state: record.state,
    done: record.snapshot.status !== 'active',
    context: record.snapshot.context,
    seq: record.seq,
    revision,
  }
}

/**
 * Applies a batch of one actor's items in order, purely: lifecycle events through its machine,
 * step results and step timers to its run, claims/renewals/reports through the work protocol,
 * durable timers as they fall due. The host commits the result under its fencing, then answers.
 */
export function applyBatch(input: BatchInput): BatchOutput {
  const { machine, now, items } = input
  const before = input.record
  let record = before
  let changed = false
  let wantsResource = false
  const messages: OutboxMessage[] = []
  const replies: BatchReply[] = []
  const orphanTimers: { dueAt: number; id: string }[] = []
  const answer = (item: number, reply: BatchReply['reply']): void => void replies.push({ item, reply })
  const transitioned = (
    current: ActorRecord,
    from: string,
    to: string,
    event: ActorEvent | DurableTimer['event'],
  ): void =>
    void messages.push({
      subject: subjects.outcome(current.type, current.name, 'transitioned'),
      event: transitionedEvent(current, from, to, event),
    })
  const settle = (current: ActorRecord): ActorRecord => {
    const settled = settleRun(machine, current, now)
    if (!settled) return current
    messages.push(...settled.messages)
    return settled.record
  }
  for (const [index, item] of items.entries()) {
    if (item.kind === 'timer') {
      const timer = record?.timers.find((t) => t.id === item.id && t.dueAt === item.dueAt)
      if (!record || !timer) {
        orphanTimers.push({ dueAt: item.dueAt, id: item.id })
        continue
      }
      changed = true
      const withoutTimer: ActorRecord = { ...record, timers: record.timers.filter((t) => t !== timer) }
      if (timer.event.type === TOMBSTONE_EXPIRE) {
        record = record.deletedAt ? undefined : withoutTimer
        continue
      }
      if (isRunEvent(timer.event.type)) {
        const outcome = applyRunEvent(machine, withoutTimer, timer.event, now)
        record = outcome?.record ?? withoutTimer
        if (outcome) messages.push(...outcome.messages)
        continue
      }
      const result = applyEvent(machine, withoutTimer, { ...timer.event, id: '' } as ActorEvent, now)
      if (result.kind === 'applied') {
        transitioned(result.record, result.from, result.to, timer.event)
        record = settle(result.record)
      } else record = withoutTimer
      continue
    }
    const event = item.event
    if (item.kind === 'request' || isWorkRequest(event)) {
      // Claims, renewals and reports are idempotent by their token, so a redelivered one is
      // evaluated again (and answered the same) rather than skipped.
      const owner = item.kind === 'request' ? driverOfWork(record, event as WorkRequest) : undefined
      if (item.kind === 'request' && owner !== undefined && owner !== item.requester) {
        const requester = item.requester
        answer(index, () =>
          problem(
            403,
            'forbidden',
            `this work belongs to driver ${owner}, not to driver ${requester} (the subject's last token)`,
          ),
        )
        continue
      }
      const outcome = applyWork(record, event as WorkRequest, { machine, now, servingDrivers: input.servingDrivers })
      if ('missing' in outcome) {
        const work = outcome.answer
        answer(index, () => ({ status: 200, body: { ...work } }))
        continue
      }
      const seen = Math.max(outcome.record.inboxSeq, item.kind === 'inbox' ? item.seq : 0)
      if (outcome.changed || seen !== outcome.record.inboxSeq) {
        record = { ...outcome.record, inboxSeq: seen }
        changed = true
      }
      messages.push(...outcome.messages)
      const work = outcome.answer
      if (outcome.wantsResource) {
        wantsResource = true
        answer(index, (_revision, resource) => ({ status: 200, body: { ...work, ...(resource ? { resource } : {}) } }))
      } else answer(index, () => ({ status: 200, body: { ...work } }))
      continue
    }
    if (item.kind !== 'inbox') continue
    if (!record || record.deletedAt) {
      answer(index, () => problem(404, 'not-found', `resource ${input.type}/${input.name} not found`))
      continue
    }
    if (item.incarnation !== undefined && item.incarnation !== record.uid && item.seq > record.inboxSeq) {
      // Sent to an earlier incarnation: the resource was deleted and created again since.
      record = { ...record, inboxSeq: item.seq }
      changed = true
      answer(index, () =>
        problem(
          404,
          'not-found',
          `resource ${input.type}/${input.name} was deleted and created again; this event was sent to the earlier one (uid ${item.incarnation})`,
        ),
      )
      continue
    }
    if (item.seq <= record.inboxSeq) {
      const current = record
      answer(index, (revision) => ({
        status: 200,
        body: { ...view(current, revision), accepted: true, duplicate: true },
      }))
      continue
    }
    if (event.type === ACTOR_RESUME) {
      // Its parked events are back in the inbox (after this one): the actor is no longer stuck.
      const { stuck: _stuck, ...rest } = record
      const resumed: ActorRecord = { ...rest, inboxSeq: item.seq }
      record = resumed
      changed = true
      answer(index, (revision) => ({ status: 200, body: { ...view(resumed, revision), accepted: true } }))
      continue
    }
    if (isRunEvent(event.type)) {
      // Step timers and retries only ever come from the actor's own durable timers, never through the inbox.
      const current = record
      answer(index, (revision) => ({ status: 200, body: { ...view(current, revision), accepted: false } }))
      continue
    }
    const result = applyEvent(machine, record, event, now, item.seq)
    if (result.kind === 'applied') {
      changed = true
      transitioned(result.record, result.from, result.to, event)
      record = settle(result.record)
      const snapshot = record
      answer(index, (revision) => ({
        status: 200,
        body: { ...view(snapshot, revision), id: event.id, from: result.from, to: result.to, accepted: true },
      }))
    } else if (result.kind === 'duplicate') {
      // Its position is passed for good: after a failover the event is not looked at again.
      const current: ActorRecord = { ...record, inboxSeq: Math.max(record.inboxSeq, item.seq) }
      changed ||= current.inboxSeq !== record.inboxSeq
      record = current
      answer(index, (revision) => ({
        status: 200,
        body: { ...view(current, revision), accepted: true, duplicate: true },
      }))
    } else {
      // Refused for good, even after a failover: the position of a refused event is committed
      // before the refusal is answered, so a redelivery to the next owner is skipped.
      const current: ActorRecord = { ...record, inboxSeq: Math.max(record.inboxSeq, item.seq) }
      changed ||= current.inboxSeq !== record.inboxSeq
      record = current
      const { code, detail } = describeRejection(result, current, event.type)
      answer(index, () =>
        problem(409, code, detail, {
          state: result.state,
          accepts: acceptedEvents(machine, current),
        }),
      )
    }
  }
  return { record, changed: changed || messages.length > 0, messages, replies, orphanTimers, wantsResource }
}
