import { AckPolicy, DeliverPolicy, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream'
import { nanos } from '@nats-io/transport-node'
import type { AnyStateMachine } from 'xstate'
import type { IRequestOp } from 'etcd3'
import type { Connections } from '../../runtime/connections.ts'
import type { TxnBatcher } from '../../runtime/txn-batcher.ts'
import type { Outbox, OutboxMessage } from '../../runtime/outbox.ts'
import type { Logger } from '../../runtime/logger.ts'
import type { ActorEvent, ActorRecord, DurableTimer } from '../../runtime/actor-record.ts'
import type { EventReply } from '../../runtime/inbox.ts'
import { compare, op, readKeys, readRange } from '../../runtime/etcd-ops.ts'
import type { ReadBatcher, Semaphore } from '../../runtime/read-batcher.ts'
import { headers, keys, partitionName, partitionOf, streams, subjects } from '../../runtime/keys.ts'
import { acceptedEvents, step } from '../lifecycle/step.ts'
import { applyRunEvent, settleRun, transitionedEvent } from '../pipeline/host.ts'
import { isRunEvent, STEP_RESULT } from '../pipeline/run.ts'
import type { Clock } from './clock.ts'

/** Shared by every partition a worker hosts. */
export interface HostContext {
  readonly connections: Connections
  readonly batcher: TxnBatcher
  readonly outbox: Outbox
  readonly logger: Logger
  readonly clock: Clock
  readonly machine: (lifecycleId: string) => Promise<AnyStateMachine>
  readonly cache: RecordCache
  /** Loads actor records, many per round trip. */
  readonly reads: ReadBatcher
  /** Bounds the actor batches in progress at once across all partitions (memory and etcd load). */
  readonly slots: Semaphore
  /** Bounds inbox messages taken from JetStream but not yet acked: the consumer waits, so memory stays flat under any backlog. */
  readonly backlog: Semaphore
  readonly timerHorizonMs: number
  readonly ackWaitMs: number
}

/** A bounded LRU of actor records with the revision they were read or written at. */
export class RecordCache {
  readonly #max: number
  readonly #entries = new Map<string, { record: ActorRecord; revision: number }>()

  constructor(max: number) {
    this.#max = max
  }

  get size(): number {
    return this.#entries.size
  }

  get(key: string): { record: ActorRecord; revision: number } | undefined {
    const entry = this.#entries.get(key)
    if (entry) {
      this.#entries.delete(key)
      this.#entries.set(key, entry)
    }
    return entry
  }

  set(key: string, entry: { record: ActorRecord; revision: number }): void {
    this.#entries.delete(key)
    this.#entries.set(key, entry)
    while (this.#entries.size > this.#max) this.#entries.delete(this.#entries.keys().next().value!)
  }

  delete(key: string): void {
    this.#entries.delete(key)
  }

  deleteWhere(predicate: (key: string) => boolean): void {
    for (const key of [...this.#entries.keys()]) if (predicate(key)) this.#entries.delete(key)
  }
}

type Item =
  | { readonly kind: 'inbox'; readonly event: ActorEvent; readonly seq: number; readonly message: JsMsg; readonly replyTo: string | undefined }
  | { readonly kind: 'timer'; readonly id: string; readonly dueAt: number }

interface Cell {
  readonly type: string
  readonly name: string
  readonly queue: Item[]
  draining: boolean
}

const MAX_BATCH = 256
const timerKeyOf = (record: { type: string; name: string }, timer: DurableTimer): string => keys.timer(record.type, record.name, timer.dueAt, timer.id)

/** Consumers of a partition's inbox are named per owner (its claim's fencing token): `actors_pNN_{token}`. */
const partitionConsumerPrefix = (partition: number): string => `actors_${partitionName(partition)}_`
export const partitionConsumerName = (partition: number, token: number): string => `${partitionConsumerPrefix(partition)}${token}`

function problem(status: number, code: string, detail: string, extra: Record<string, unknown> = {}): EventReply {
  const titles: Record<number, string> = { 400: 'Bad Request', 404: 'Not Found', 409: 'Conflict', 503: 'Service Unavailable' }
  return { status, body: { type: `urn:conveyor:problem:${code}`, title: titles[status] ?? 'Error', status, detail, ...extra } }
}

/**
 * Hosts the actors of one partition while this worker owns it: consumes the partition's inbox,
 * applies each actor's events one at a time in arrival order (a mailbox per actor, pending events
 * group-committed), fires its durable timers, and fences every write with the claim's revision.
 */
export class PartitionHost {
  readonly partition: number
  readonly token: number
  readonly #context: HostContext
  readonly #cells = new Map<string, Cell>()
  readonly #timers = new Map<string, unknown>()
  readonly #drains = new Set<Promise<void>>()
  #messages: ConsumerMessages | undefined
  #loop: Promise<void> | undefined
  /** Delivered inbox messages in stream order, until everything before them is applied and acked. */
  readonly #outstanding: { seq: number; message: JsMsg; done: boolean }[] = []
  readonly #tracked = new Map<number, { seq: number; message: JsMsg; done: boolean }>()
  #ackedFloor = 0
  #pendingAck: JsMsg | undefined
  #scanTimer: unknown
  #stopped = false

  constructor(partition: number, token: number, context: HostContext) {
    this.partition = partition
    this.token = token
    this.#context = context
  }

  /**
   * Creates this owner's consumer of the partition's inbox just past the ack floor the previous
   * owners reached (everything at or below it is applied), so whatever they left unacknowledged
   * comes back first, in stream order. The new consumer exists before the old ones are deleted, so
   * a crash in between never leaves the partition without a floor to resume from.
   */
  async start(): Promise<void> {
    const { jsm, js } = this.#context.connections
    const name = partitionConsumerName(this.partition, this.token)
    const previous: { name: string; floor: number }[] = []
    for await (const info of await jsm.consumers.list(streams.inbox)) {
      if (info.name.startsWith(`${partitionConsumerPrefix(this.partition)}`) && info.name !== name) previous.push({ name: info.name, floor: info.ack_floor.stream_seq })
    }
    const floor = Math.max(0, ...previous.map((p) => p.floor))
    this.#ackedFloor = floor
    await jsm.consumers.add(streams.inbox, {
      durable_name: name,
      // One ack covers every earlier message: far cheaper than an ack per event.
      ack_policy: AckPolicy.All,
      ...(floor > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: floor + 1 } : { deliver_policy: DeliverPolicy.All }),
      filter_subject: subjects.inboxOfPartition(this.partition),
      ack_wait: nanos(this.#context.ackWaitMs),
      max_ack_pending: 20_000,
    })
    for (const old of previous) await jsm.consumers.delete(streams.inbox, old.name).catch(() => false)
    const consumer = await js.consumers.get(streams.inbox, name)
    this.#messages = await consumer.consume({ max_messages: 32 })
    this.#loop = this.#consume(this.#messages)
    await this.#scanTimers()
  }

  async #consume(messages: ConsumerMessages): Promise<void> {
    for await (const message of messages) {
      if (this.#stopped) break
      await this.#context.backlog.acquire()
      if (this.#stopped) {
        this.#context.backlog.release()
        break
      }
      if (message.seq <= this.#ackedFloor || this.#tracked.has(message.seq)) {
        // A redelivery of something already applied, or still being applied.
        this.#context.backlog.release()
        continue
      }
      const [, , , type, name] = message.subject.split('.')
      let event: ActorEvent
      try {
        event = message.json<ActorEvent>()
        if (typeof event.type !== 'string' || typeof event.id !== 'string' || !type || !name) throw new Error('not an actor event')
      } catch {
        this.#context.logger.warn('skipping a malformed inbox message', { subject: message.subject })
        this.#track(message).done = true
        this.#advanceAckFloor()
        this.#context.backlog.release()
        continue
      }
      this.#track(message)
      this.#enqueue(type, name, { kind: 'inbox', event, seq: message.seq, message, replyTo: message.headers?.get(headers.replyTo) || undefined })
    }
  }

  #enqueue(type: string, name: string, item: Item): void {
    if (this.#stopped) {
      if (item.kind === 'inbox') this.#context.backlog.release()
      return
    }
    const key = `${type}/${name}`
    let cell = this.#cells.get(key)
    if (!cell) this.#cells.set(key, (cell = { type, name, queue: [], draining: false }))
    cell.queue.push(item)
    if (cell.draining) return
    cell.draining = true
    const drain = this.#drain(key, cell).finally(() => this.#drains.delete(drain))
    this.#drains.add(drain)
  }

  async #drain(key: string, cell: Cell): Promise<void> {
    let failures = 0
    try {
      while (cell.queue.length > 0 && !this.#stopped) {
        const batch = cell.queue.splice(0, MAX_BATCH)
        let done = false
        await this.#context.slots.acquire()
        try {
          done = await this.#process(key, cell, batch)
          failures = 0
        } catch (error) {
          failures++
          this.#context.logger.warn('applying events failed; retrying', { actor: key, error: String(error) })
          for (const item of batch) if (item.kind === 'inbox') item.message.working()
          await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 50 * 2 ** failures)))
        } finally {
          this.#context.slots.release()
        }
        if (!done) cell.queue.unshift(...batch)
      }
    } finally {
      cell.draining = false
      if (cell.queue.length === 0) this.#cells.delete(key)
    }
  }

  /** Applies a batch of one actor's items; false means "state changed under us, reload and redo". */
  async #process(key: string, cell: Cell, batch: readonly Item[]): Promise<boolean> {
    const { clock, cache } = this.#context
    let cached = cache.get(key)
    const fromCache = cached !== undefined
    if (!cached) {
      const stored = await this.#context.reads.read(keys.actor(cell.type, cell.name))
      if (!stored) {
        const missing = (): EventReply => problem(404, 'not-found', `resource ${cell.type}/${cell.name} not found`)
        for (const item of batch) if (item.kind === 'inbox') this.#finish(item, missing, 0)
        return true
      }
      cached = { record: JSON.parse(stored.value) as ActorRecord, revision: stored.modRevision }
      cache.set(key, cached)
    }
    const machine = await this.#context.machine(cached.record.lifecycle)
    const before = cached.record
    let record = before
    let dirty = false
    const messages: OutboxMessage[] = []
    const answers: { item: Item & { kind: 'inbox' }; reply: (revision: number) => EventReply }[] = []
    const now = clock.now()
    const transitioned = (from: string, to: string, event: ActorEvent | DurableTimer['event']): void =>
      void messages.push({ subject: subjects.outcome(cell.type, cell.name, 'transitioned'), event: transitionedEvent(record, from, to, event) })
    const settle = (): void => {
      const settled = settleRun(machine, record, now)
      if (!settled) return
      record = settled.record
      messages.push(...settled.messages)
    }
    for (const item of batch) {
      if (item.kind === 'inbox') {
        if (item.seq <= record.inboxSeq) {
          answers.push({ item, reply: (revision) => this.#current(record, revision, { duplicate: true }) })
          continue
        }
        if (isRunEvent(item.event.type)) {
          // A driver's step report moves the run (or is stale and changes nothing); step timers
          // only ever come from the actor's own durable timers, never through the inbox.
          const outcome = item.event.type === STEP_RESULT ? applyRunEvent(machine, record, item.event, now) : undefined
          if (outcome) {
            record = { ...outcome.record, inboxSeq: item.seq }
            messages.push(...outcome.messages)
            dirty = true
          }
          const applied = outcome !== undefined
          answers.push({ item, reply: (revision) => ({ status: 200, body: { ...this.#view(record, revision), accepted: applied } }) })
          continue
        }
        const result = step(machine, record, item.event, now, item.seq)
        if (result.kind === 'applied') {
          record = result.record
          transitioned(result.from, result.to, item.event)
          settle()
          const snapshot = record
          answers.push({ item, reply: (revision) => ({ status: 200, body: { ...this.#view(snapshot, revision), id: item.event.id, from: result.from, to: result.to, accepted: true } }) })
        } else if (result.kind === 'duplicate') answers.push({ item, reply: (revision) => this.#current(record, revision, { duplicate: true }) })
        else {
          const detail =
            result.reason === 'final'
              ? `resource ${cell.type}/${cell.name} is in final state ${result.state} and accepts no more events`
              : `resource ${cell.type}/${cell.name} is in state ${result.state}, which does not accept ${item.event.type}`
          const current = record
          answers.push({ item, reply: () => problem(409, result.reason === 'final' ? 'actor-done' : 'event-not-accepted', detail, { state: result.state, accepts: acceptedEvents(machine, current) }) })
        }
      } else {
        const timer = record.timers.find((t) => t.id === item.id && t.dueAt === item.dueAt)
        if (!timer) continue
        const withoutTimer = { ...record, timers: record.timers.filter((t) => t !== timer) }
        dirty = true
        if (isRunEvent(timer.event.type)) {
          const outcome = applyRunEvent(machine, withoutTimer, timer.event, now)
          record = outcome?.record ?? withoutTimer
          if (outcome) messages.push(...outcome.messages)
          continue
        }
        const result = step(machine, withoutTimer, { ...timer.event, id: '' } as ActorEvent, now)
        if (result.kind === 'applied') {
          record = result.record
          transitioned(result.from, result.to, timer.event)
          settle()
        } else record = withoutTimer
      }
    }
    if (!dirty && messages.length === 0) {
      // Nothing to commit, so no compare guards the cached record: a resource replaced or deleted
      // through the API since it was cached must not answer with its old state.
      if (fromCache && (await this.#revisionOf(cell)) !== cached.revision) {
        cache.delete(key)
        return false
      }
      for (const { item, reply } of answers) this.#finish(item, reply, cached.revision)
      return true
    }
    const added = record.timers.filter((t) => !before.timers.some((b) => timerKeyOf(before, b) === timerKeyOf(record, t)))
    const removed = before.timers.filter((b) => !record.timers.some((t) => timerKeyOf(record, t) === timerKeyOf(before, b)))
    const entry = messages.length > 0 ? this.#context.outbox.entryOf(messages) : undefined
    const ops: IRequestOp[] = [
      op.put(keys.actor(cell.type, cell.name), JSON.stringify(record)),
      ...added.map((t) => op.put(timerKeyOf(record, t), '')),
      ...removed.map((t) => op.delete(timerKeyOf(before, t))),
      ...(entry ? [entry.op] : []),
    ]
    const outcome = await this.#context.batcher.commit({
      compares: [compare.modRevision(keys.actor(cell.type, cell.name), cached.revision), compare.createRevision(keys.partitionClaim(this.partition), this.token)],
      ops,
    })
    if (!outcome.succeeded) {
      cache.delete(key)
      if (!(await this.#stillOwned())) {
        this.#context.logger.warn('partition claim lost; this worker stops applying its events', { partition: this.partition })
        this.#stopped = true
      }
      return false
    }
    cache.set(key, { record, revision: outcome.revision })
    for (const { item, reply } of answers) this.#finish(item, reply, outcome.revision)
    if (entry) this.#context.outbox.publishInBackground([entry.entry], outcome.revision)
    for (const timer of removed) this.#cancelTimer(timerKeyOf(before, timer))
    for (const timer of added) this.scheduleTimer(cell.type, cell.name, timer.dueAt, timer.id)
    return true
  }

  async #revisionOf(cell: Cell): Promise<number | undefined> {
    const { values } = await readKeys(this.#context.connections.etcd, [keys.actor(cell.type, cell.name)])
    return values[0]?.modRevision
  }

  async #stillOwned(): Promise<boolean> {
    const { values } = await readKeys(this.#context.connections.etcd, [keys.partitionClaim(this.partition)])
    return values[0]?.createRevision === this.token
  }

  #view(record: ActorRecord, revision: number): Record<string, unknown> {
    return { type: record.type, name: record.name, runid: record.runid, state: record.state, done: record.snapshot.status !== 'active', context: record.snapshot.context, seq: record.seq, revision }
  }

  #current(record: ActorRecord, revision: number, extra: Record<string, unknown>): EventReply {
    return { status: 200, body: { ...this.#view(record, revision), accepted: true, ...extra } }
  }

  #track(message: JsMsg): { seq: number; message: JsMsg; done: boolean } {
    const entry = { seq: message.seq, message, done: false }
    this.#outstanding.push(entry)
    this.#tracked.set(message.seq, entry)
    return entry
  }

  /** Acks the highest message below which everything is applied (one ack for many, coalesced). */
  #advanceAckFloor(): void {
    let last: JsMsg | undefined
    while (this.#outstanding[0]?.done) {
      const entry = this.#outstanding.shift()!
      this.#tracked.delete(entry.seq)
      last = entry.message
    }
    if (!last) return
    this.#ackedFloor = last.seq
    const pending = this.#pendingAck
    this.#pendingAck = last
    if (pending === undefined) setImmediate(() => {
      const message = this.#pendingAck
      this.#pendingAck = undefined
      message?.ack()
    })
  }

  /** Marks an inbox message applied (the ack floor may move) and answers whoever waits for it. */
  #finish(item: Item & { kind: 'inbox' }, reply: (revision: number) => EventReply, revision: number): void {
    const entry = this.#tracked.get(item.seq)
    if (entry) entry.done = true
    this.#advanceAckFloor()
    this.#context.backlog.release()
    if (!item.replyTo) return
    const answer = reply(revision)
    this.#context.connections.nats.publish(item.replyTo, JSON.stringify({ ...answer, body: { ...answer.body, id: item.event.id } }))
  }

  /** Arms an in-memory timer for a durable one due within the horizon; later ones are found by the periodic scan. */
  scheduleTimer(type: string, name: string, dueAt: number, id: string): void {
    const { clock, timerHorizonMs } = this.#context
    const key = keys.timer(type, name, dueAt, id)
    if (this.#stopped || this.#timers.has(key) || dueAt > clock.now() + timerHorizonMs) return
    this.#timers.set(
      key,
      clock.setTimeout(() => {
        this.#timers.delete(key)
        this.#enqueue(type, name, { kind: 'timer', id, dueAt })
      }, dueAt - clock.now()),
    )
  }

  #cancelTimer(key: string): void {
    const handle = this.#timers.get(key)
    if (handle === undefined) return
    this.#context.clock.clearTimeout(handle)
    this.#timers.delete(key)
  }

  timerDeleted(key: string): void {
    this.#cancelTimer(key)
  }

  async #scanTimers(): Promise<void> {
    if (this.#stopped) return
    const { clock, timerHorizonMs } = this.#context
    const prefix = keys.timersOfPartition(this.partition)
    const until = `${prefix}${String(clock.now() + timerHorizonMs + 1).padStart(15, '0')}`
    for (const stored of await readRange(this.#context.connections.etcd, prefix, until)) {
      const parsed = parseTimerKey(stored.key)
      if (parsed) this.scheduleTimer(parsed.type, parsed.name, parsed.dueAt, parsed.id)
    }
    this.#scanTimer = clock.setTimeout(() => void this.#scanTimers().catch((error) => this.#context.logger.warn('timer scan failed', { error: String(error) })), timerHorizonMs / 2)
  }

  /** Stops taking events, lets the batches in flight finish, and forgets this partition's state. */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#context.clock.clearTimeout(this.#scanTimer)
    for (const handle of this.#timers.values()) this.#context.clock.clearTimeout(handle)
    this.#timers.clear()
    await this.#messages?.close().catch(() => {})
    await this.#loop?.catch(() => {})
    await Promise.allSettled([...this.#drains])
    // Messages still queued go unacked: the next owner gets them again.
    for (const cell of this.#cells.values()) for (const item of cell.queue) if (item.kind === 'inbox') this.#context.backlog.release()
    this.#cells.clear()
    this.#context.cache.deleteWhere((key) => {
      const [type, name] = key.split('/')
      return partitionOf(type!, name!) === this.partition
    })
  }
}

/** `/conveyor/timers/pNN/{dueAt}/{type}/{name}/{id}` back into its parts. */
export function parseTimerKey(key: string): { partition: number; dueAt: number; type: string; name: string; id: string } | undefined {
  const parts = key.slice(keys.timers().length).split('/')
  if (parts.length !== 5) return undefined
  const [partition, due, type, name, id] = parts as [string, string, string, string, string]
  return { partition: Number(partition.slice(1)), dueAt: Number(due), type, name, id: decodeURIComponent(id) }
}
