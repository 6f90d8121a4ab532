import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type ConsumerMessages,
  type JsMsg,
} from '@nats-io/jetstream'
import { nanos, type Subscription } from '@nats-io/transport-node'
import type { AnyStateMachine } from 'xstate'
import { GRPCInvalidArgumentError, type IRequestOp } from 'etcd3'
import type { Connections } from '../../runtime/connections.ts'
import type { TxnBatcher } from '../../runtime/txn-batcher.ts'
import type { Outbox } from '../../runtime/outbox.ts'
import type { Logger } from '../../runtime/logger.ts'
import type { ActorEvent, ActorRecord, ParkedEvent } from '../../runtime/actor-record.ts'
import type { EventReply } from '../../runtime/inbox.ts'
import { compare, op, readKeys, readRange, type StoredValue } from '../../runtime/etcd-ops.ts'
import type { ReadBatcher } from '../../runtime/read-batcher.ts'
import type { Semaphore } from '../../runtime/semaphore.ts'
import {
  consumers,
  headers,
  keys,
  parseInboxSubject,
  parseWorkSubject,
  parseTimerKey,
  partitionOf,
  streams,
  subjects,
} from '../../runtime/keys.ts'
import { presentResource, type StoredResource } from '../../runtime/resource-view.ts'
import type { Clock } from './clock.ts'
import { AckFloor } from './ack-floor.ts'
import { applyBatch, problem, type BatchItem, type BatchOutput } from './apply-batch.ts'
import { isWorkRequest } from '../work/claims.ts'
import type { WorkRequest } from '../../definitions/work.ts'
import type { CachedRecord, RecordCache } from './record-cache.ts'
import type { LRUCache } from 'lru-cache'
import { serveSync } from './partition-sync.ts'
import { faultHooks } from '../../runtime/faults.ts'
import { backoffMs } from '../../runtime/backoff.ts'

/** Shared by every partition a worker hosts. */
export interface HostContext {
  readonly connections: Connections
  readonly batcher: TxnBatcher
  readonly outbox: Outbox
  readonly logger: Logger
  readonly clock: Clock
  readonly machine: (lifecycleId: string) => Promise<AnyStateMachine>
  readonly cache: RecordCache
  /** Stored resources by `type/name/runid`, for the answers that carry them. */
  readonly resources: LRUCache<string, StoredValue>
  /** Loads actor records, many per round trip. */
  readonly reads: ReadBatcher
  /** Bounds the actor batches in progress at once across all partitions (memory and etcd load). */
  readonly slots: Semaphore
  /** Bounds inbox messages taken from JetStream but not yet acked: the consumer waits, so memory stays flat under any backlog. */
  readonly backlog: Semaphore
  readonly timerHorizonMs: number
  readonly ackWaitMs: number
  /** Drivers with a live instance serving a resource type; whether a driver has one. */
  readonly registry: { servingDrivers(type: string): readonly string[]; isLive(driver: string): boolean }
}

type Item =
  | (BatchItem & { readonly kind: 'timer' })
  | (BatchItem & { readonly kind: 'inbox'; readonly message: JsMsg; readonly replyTo: string | undefined })
  | (BatchItem & { readonly kind: 'request'; readonly respond: (reply: EventReply) => void })
type AnsweredItem = Item & { readonly kind: 'inbox' | 'request' }

interface Cell {
  readonly type: string
  readonly name: string
  readonly queue: Item[]
  draining: boolean
}

const MAX_BATCH = 256
/** How long an inbox consumer may deliver nothing before it is asked whether events wait. */
const STALL_CHECK_MS = 10_000
/** How long stopping waits for the batches in flight. */
const STOP_BOUND_MS = 5000

/** etcd refuses the request itself (too many operations, too large): the same write always fails. */
const isRefusedWrite = (error: unknown): boolean => error instanceof GRPCInvalidArgumentError
const refusalOf = (error: unknown): string => String((error as Error).message ?? error).replace(/^\w*Error: /, '')
const timerKeyOf = (record: { type: string; name: string }, timer: { dueAt: number; id: string }): string =>
  keys.timer(record.type, record.name, timer.dueAt, timer.id)

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
  #acks = new AckFloor(0)
  #consumerName: string | undefined
  /** Consumers this host made after its first (see `#reseat`). */
  #reseats = 0
  #reseating: Promise<void> | undefined
  /** Inbox messages received, and whether the loop waits for backlog room (no delivery expected then). */
  #received = 0
  #waitingForRoom = false
  #stallTimer: unknown
  #sync: Subscription | undefined
  #work: Subscription | undefined
  #written: Subscription | undefined
  #scanTimer: unknown
  #failedScans = 0
  readonly #stopping = new AbortController()
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
    const previous = await this.#previousConsumers(consumers.partition(this.partition, this.token))
    const floor = Math.max(0, ...previous.map((p) => p.floor))
    this.#acks = new AckFloor(floor)
    await this.#seat(consumers.partition(this.partition, this.token), floor, previous)
    this.#sync = serveSync(this.#context, this.partition)
    this.#work = this.#serveWork()
    this.#written = this.#followWrites()
    this.#watchStalls()
    // A failed first scan is retried on its own schedule: the partition serves meanwhile.
    await this.#scanTimers()
  }

  /** This partition's inbox consumers other than `name`, with the ack floor each reached. */
  async #previousConsumers(name: string): Promise<{ name: string; floor: number }[]> {
    const previous: { name: string; floor: number }[] = []
    for await (const info of await this.#context.connections.jsm.consumers.list(streams.inbox)) {
      if (info.name.startsWith(consumers.partitionPrefix(this.partition)) && info.name !== name)
        previous.push({ name: info.name, floor: info.ack_floor.stream_seq })
    }
    return previous
  }

  /** Consumes the inbox with a new consumer `name` from just past `floor`, then deletes the `previous` ones. */
  async #seat(name: string, floor: number, previous: readonly { name: string }[]): Promise<void> {
    const { jsm, js } = this.#context.connections
    await jsm.consumers.add(streams.inbox, {
      durable_name: name,
      // One ack covers every earlier message: far cheaper than an ack per event.
      ack_policy: AckPolicy.All,
      ...(floor > 0
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: floor + 1 }
        : { deliver_policy: DeliverPolicy.All }),
      filter_subject: subjects.inboxOfPartition(this.partition),
      ack_wait: nanos(this.#context.ackWaitMs),
      max_ack_pending: 20_000,
    })
    for (const old of previous) await jsm.consumers.delete(streams.inbox, old.name).catch(() => false)
    const consumer = await js.consumers.get(streams.inbox, name)
    this.#consumerName = name
    this.#acks.restarted()
    this.#messages = await consumer.consume({ max_messages: 32 })
    this.#loop = this.#consume(this.#messages)
  }

  /**
   * Takes the inbox again from the ack floor with a new consumer, for as long as it takes: what
   * never arrived (or a consumer that stopped delivering) comes again, and what was applied
   * already is skipped by its sequence.
   */
  #reseat(reason: string): void {
    if (this.#reseating || this.#stopped) return
    this.#context.logger.warn('taking the partition inbox again from its ack floor', {
      partition: this.partition,
      floor: this.#acks.floor,
      reason,
    })
    this.#reseating = (async () => {
      await this.#messages?.close().catch(() => {})
      await this.#loop?.catch(() => {})
      for (let attempt = 1; !this.#stopped; attempt++) {
        try {
          const name = `${consumers.partition(this.partition, this.token)}_${++this.#reseats}`
          return await this.#seat(name, this.#acks.floor, await this.#previousConsumers(name))
        } catch (error) {
          this.#context.logger.warn('taking the partition inbox again failed; retrying', {
            partition: this.partition,
            error: String(error),
          })
          await new Promise((resolve) => setTimeout(resolve, backoffMs(attempt, { baseMs: 500, maxMs: 5000 })))
        }
      }
    })().finally(() => (this.#reseating = undefined))
  }

  /**
   * A consumer can stop delivering without an error after a NATS node it used is lost: when
   * nothing arrived for a while, the consumer is asked whether events wait, and if so the inbox
   * is taken again.
   */
  #watchStalls(): void {
    let received = this.#received
    /** Whether the previous check found events waiting with nothing delivered. */
    let waitingBefore = false
    const check = async (): Promise<void> => {
      if (this.#stopped || this.#reseating || this.#waitingForRoom || this.#received !== received)
        return void (waitingBefore = false)
      const name = this.#consumerName
      if (!name) return
      const info = await this.#context.connections.jsm.consumers.info(streams.inbox, name).catch((error: unknown) => {
        // Gone (deleted, or lost with the only node that held it): nothing will ever arrive through it.
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound) return undefined
        throw error
      })
      if (this.#stopped || this.#reseating || name !== this.#consumerName) return
      if (!info) return this.#reseat(`its consumer ${name} no longer exists`)
      // Waiting at two checks in a row with nothing delivered: an event published just now is not a stall.
      const waiting = info.num_pending > 0 && this.#received === received && !this.#waitingForRoom
      if (waiting && waitingBefore) {
        waitingBefore = false
        this.#reseat(`nothing delivered for ${STALL_CHECK_MS / 1000} s while ${info.num_pending} event(s) wait`)
      } else waitingBefore = waiting
    }
    const tick = (): void => {
      void check()
        .catch(() => {})
        .finally(() => {
          received = this.#received
          if (!this.#stopped) this.#stallTimer = this.#context.clock.setTimeout(tick, STALL_CHECK_MS)
        })
    }
    this.#stallTimer = this.#context.clock.setTimeout(tick, STALL_CHECK_MS)
  }

  async #consume(messages: ConsumerMessages): Promise<void> {
    for await (const message of messages) {
      if (this.#stopped) break
      this.#received++
      if (!this.#acks.arrived(message.info.deliverySequence)) {
        this.#reseat(`deliveries before ${message.info.deliverySequence} never arrived`)
        break
      }
      try {
        // Stopping aborts the wait: a worker whose backlog is full still stops.
        this.#waitingForRoom = true
        await this.#context.backlog.acquire(this.#stopping.signal)
      } catch {
        break
      } finally {
        this.#waitingForRoom = false
      }
      if (this.#stopped) {
        this.#context.backlog.release()
        break
      }
      if (this.#acks.seen(message.seq)) {
        // A redelivery of something already applied (acked again: the floor covers it), or still being applied.
        if (message.seq <= this.#acks.floor) message.ack()
        this.#context.backlog.release()
        continue
      }
      const target = parseInboxSubject(message.subject)
      let event: ActorEvent | undefined
      try {
        event = message.json<ActorEvent>()
      } catch {
        event = undefined
      }
      if (!target || typeof event?.type !== 'string' || typeof event.id !== 'string') {
        this.#context.logger.warn('skipping a malformed inbox message', { subject: message.subject })
        this.#acks.track(message)
        this.#acks.done(message.seq)
        this.#context.backlog.release()
        continue
      }
      this.#acks.track(message)
      this.#enqueue(target.type, target.name, {
        kind: 'inbox',
        event,
        seq: message.seq,
        message,
        replyTo: message.headers?.get(headers.replyTo) || undefined,
        incarnation: message.headers?.get(headers.incarnation) || undefined,
      })
    }
  }

  /** Caches actor records the gateway writes (created or replaced resources), newer ones only. */
  #followWrites(): Subscription {
    return this.#context.connections.nats.subscribe(subjects.actorWrittenOfPartition(this.partition), {
      callback: (error, message) => {
        if (error || this.#stopped) return
        const text = message.string()
        const at = text.indexOf('\n')
        const revision = Number(text.slice(0, at))
        if (at <= 0 || !Number.isInteger(revision)) return
        try {
          const record = JSON.parse(text.slice(at + 1)) as ActorRecord
          const key = `${record.type}/${record.name}`
          const cached = this.#context.cache.get(key)
          if (!cached || cached.revision < revision) this.#context.cache.set(key, { record, revision })
        } catch {
          // not a record: the host reads it when it needs it
        }
      },
    })
  }

  /** Claims, renewals and reports come as core NATS requests: each joins its actor's mailbox, and is answered once applied. */
  #serveWork(): Subscription {
    return this.#context.connections.nats.subscribe(subjects.workOfPartition(this.partition), {
      callback: (error, message) => {
        if (error || this.#stopped) return
        const target = parseWorkSubject(message.subject)
        let event: WorkRequest | undefined
        try {
          event = message.json<WorkRequest>()
        } catch {
          event = undefined
        }
        if (
          !target ||
          !event ||
          !isWorkRequest(event) ||
          typeof event.token !== 'string' ||
          typeof event.work !== 'object' ||
          event.work === null
        ) {
          message.respond(
            JSON.stringify(problem(400, 'invalid', 'expected a claim, renewal or report: {type, id, work, token, …}')),
          )
          return
        }
        this.#enqueue(target.type, target.name, {
          kind: 'request',
          event,
          requester: target.driver,
          respond: (reply) => message.respond(JSON.stringify(reply)),
        })
      },
    })
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
    // After etcd refused a batch's write, items go one at a time until the one it refuses is found.
    let oneByOne = false
    try {
      while (cell.queue.length > 0 && !this.#stopped) {
        const batch = cell.queue.splice(0, oneByOne ? 1 : MAX_BATCH)
        let done = false
        await this.#context.slots.acquire()
        try {
          done = await this.#process(key, cell, batch)
          failures = 0
        } catch (error) {
          this.#context.cache.delete(key)
          if (isRefusedWrite(error)) {
            // Deterministic: the same write is refused every time, so retrying would stall the actor
            // (and, through the backlog its events hold, the worker). Find the item and park it.
            if (batch.length > 1) oneByOne = true
            else done = await this.#park(key, cell, batch[0]!, refusalOf(error))
          } else {
            failures++
            // The commit may have happened (an ambiguous error): reload before trying again.
            this.#context.logger.warn('applying events failed; retrying', { actor: key, error: String(error) })
            for (const item of batch) if (item.kind === 'inbox') item.message.working()
            await new Promise((resolve) => setTimeout(resolve, backoffMs(failures, { baseMs: 50, maxMs: 2000 })))
          }
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

  /**
   * Keeps aside one item whose result etcd refuses to store: an inbox event is written under
   * `keys.parkedEvent` and its position committed with the actor marked `stuck` (the reason shows
   * in `…/actor` and the resource's status); a timer is dropped; the sender is answered 409. The
   * actor's other events go on. False when even that could not be written (tried again later).
   */
  async #park(key: string, cell: Cell, item: Item, reason: string): Promise<boolean> {
    this.#context.logger.error('an event cannot be stored; it is kept aside and the actor marked stuck', {
      actor: key,
      event: item.kind === 'timer' ? item.id : item.event.type,
      reason,
    })
    const refusal = (): EventReply =>
      problem(
        409,
        'actor-stuck',
        `the result of this event cannot be stored (${reason}); it is kept aside: list it with GET /resources/${cell.type}/${cell.name}/actor/parked and send it again with POST …/actor/resume once the cause is fixed`,
      )
    if (item.kind === 'request') {
      item.respond({ ...refusal(), body: { ...refusal().body, id: item.event.id } })
      return true
    }
    const { cached } = await this.#load(key, cell)
    const record = cached?.record
    const actorKey = keys.actor(cell.type, cell.name)
    const now = new Date(this.#context.clock.now()).toISOString()
    const ops: IRequestOp[] = []
    let next: ActorRecord | undefined
    if (item.kind === 'inbox') {
      const parked: ParkedEvent = { seq: item.seq, event: item.event, reason, parkedAt: now }
      ops.push(op.put(keys.parkedEvent(cell.type, cell.name, item.seq), JSON.stringify(parked)))
    } else ops.push(op.delete(timerKeyOf(cell, item)))
    if (record && !(item.kind === 'inbox' && item.seq <= record.inboxSeq)) {
      next = {
        ...record,
        ...(item.kind === 'inbox' ? { inboxSeq: Math.max(record.inboxSeq, item.seq) } : {}),
        timers: item.kind === 'timer' ? record.timers.filter((t) => t.id !== item.id) : record.timers,
        stuck: { reason, since: record.stuck?.since ?? now, parked: (record.stuck?.parked ?? 0) + 1 },
      }
      ops.push(op.put(actorKey, JSON.stringify(next)))
    }
    const fence = [compare.createRevision(keys.partitionClaim(this.partition), this.token)]
    let outcome
    try {
      outcome = await this.#context.batcher.commit({
        compares: [...fence, compare.modRevision(actorKey, cached?.revision ?? 0)],
        ops,
      })
    } catch (error) {
      if (!isRefusedWrite(error) || !next) throw error
      // The record itself cannot be written: keep the event aside at least; its position stays.
      outcome = await this.#context.batcher.commit({ compares: fence, ops: ops.slice(0, 1) })
      next = undefined
    }
    if (!outcome.succeeded) return false
    if (next) this.#context.cache.set(key, { record: next, revision: outcome.revision })
    if (item.kind === 'timer') this.#cancelTimer(timerKeyOf(cell, item))
    else this.#finish(item, refusal)
    return true
  }

  async #load(key: string, cell: Cell): Promise<{ cached: CachedRecord | undefined; fromCache: boolean }> {
    const hit = this.#context.cache.get(key)
    if (hit) return { cached: hit, fromCache: true }
    const stored = await this.#context.reads.read(keys.actor(cell.type, cell.name))
    if (!stored) return { cached: undefined, fromCache: false }
    const cached = { record: JSON.parse(stored.value) as ActorRecord, revision: stored.modRevision }
    this.#context.cache.set(key, cached)
    return { cached, fromCache: false }
  }

  /** Loads, applies, commits and answers a batch of one actor's items; false means "state changed under us, reload and redo". */
  async #process(key: string, cell: Cell, batch: readonly Item[]): Promise<boolean> {
    const { cached, fromCache } = await this.#load(key, cell)
    const machine = cached ? await this.#context.machine(cached.record.lifecycle) : undefined
    const output = applyBatch({
      type: cell.type,
      name: cell.name,
      // Only read where a record exists.
      machine: machine as AnyStateMachine,
      record: cached?.record,
      items: batch,
      now: this.#context.clock.now(),
      servingDrivers: (type) => this.#context.registry.servingDrivers(type),
    })
    // The stored resource an answer carries does not change with this commit: read it meanwhile.
    const stored = output.wantsResource && output.record ? this.#storedResource(cell, output.record.runid) : undefined
    stored?.catch(() => {})
    if (!output.changed && output.orphanTimers.length === 0) {
      // Nothing to commit, so no compare guards the cached record: a resource replaced or deleted
      // through the API since it was cached must not answer with its old state.
      if (fromCache && (await this.#revisionOf(cell)) !== cached?.revision) {
        this.#context.cache.delete(key)
        return false
      }
      await this.#answer(batch, output, cached?.revision ?? 0, cached?.record, stored)
      return true
    }
    const revision = await this.#commit(key, cell, cached, output)
    if (revision === undefined) return false
    await this.#answer(batch, output, revision, output.record, stored)
    return true
  }

  /** Commits a batch's result fenced by the actor's revision and the partition claim; undefined when a compare failed. */
  async #commit(
    key: string,
    cell: Cell,
    cached: CachedRecord | undefined,
    output: BatchOutput,
  ): Promise<number | undefined> {
    const before = cached?.record
    const record = output.record
    const beforeTimers = before?.timers ?? []
    const afterTimers = record?.timers ?? []
    const added = record
      ? afterTimers.filter((t) => !beforeTimers.some((b) => b.id === t.id && b.dueAt === t.dueAt))
      : []
    const removed = beforeTimers.filter((b) => !afterTimers.some((t) => t.id === b.id && t.dueAt === b.dueAt))
    const entry = output.messages.length > 0 ? this.#context.outbox.entryOf(output.messages) : undefined
    const actorKey = keys.actor(cell.type, cell.name)
    const ops: IRequestOp[] = [
      ...(record ? [op.put(actorKey, JSON.stringify(record))] : before ? [op.delete(actorKey)] : []),
      ...added.map((t) => op.put(timerKeyOf(cell, t), '')),
      ...removed.map((t) => op.delete(timerKeyOf(cell, t))),
      ...output.orphanTimers.map((t) => op.delete(timerKeyOf(cell, t))),
      ...(entry ? [entry.op] : []),
    ]
    const outcome = await this.#context.batcher.commit({
      compares: [
        compare.modRevision(actorKey, cached?.revision ?? 0),
        compare.createRevision(keys.partitionClaim(this.partition), this.token),
      ],
      ops,
    })
    if (!outcome.succeeded) {
      this.#context.cache.delete(key)
      if (!(await this.#stillOwned())) {
        this.#context.logger.warn('partition claim lost; this worker stops applying its events', {
          partition: this.partition,
        })
        this.#stopped = true
      }
      return undefined
    }
    faultHooks.afterActorCommit?.(output.messages.map((m) => m.subject))
    if (record) this.#context.cache.set(key, { record, revision: outcome.revision })
    else this.#context.cache.delete(key)
    if (entry) this.#context.outbox.publishInBackground([entry.entry], outcome.revision)
    for (const timer of [...removed, ...output.orphanTimers]) this.#cancelTimer(timerKeyOf(cell, timer))
    for (const timer of added) this.scheduleTimer(cell.type, cell.name, timer.dueAt, timer.id)
    return outcome.revision
  }

  async #answer(
    batch: readonly Item[],
    output: BatchOutput,
    revision: number,
    record: ActorRecord | undefined,
    stored: Promise<StoredValue | undefined> | undefined,
  ): Promise<void> {
    const replied = new Set<number>()
    const value = await stored
    const resource =
      value && record
        ? presentResource(JSON.parse(value.value) as StoredResource, value.modRevision, record)
        : undefined
    for (const { item, reply } of output.replies) {
      replied.add(item)
      this.#finish(batch[item] as AnsweredItem, () => reply(revision, resource))
    }
    for (const [index, item] of batch.entries())
      if (item.kind !== 'timer' && !replied.has(index)) this.#finish(item, undefined)
  }

  /** The resource as stored for a run: a replace starts a new run, so one read serves every step of a run. */
  async #storedResource(cell: Cell, runid: string): Promise<StoredValue | undefined> {
    const key = `${cell.type}/${cell.name}/${runid}`
    const cached = this.#context.resources.get(key)
    if (cached) return cached
    const value = await this.#context.reads.read(keys.resource(cell.type, cell.name))
    if (value && (JSON.parse(value.value) as StoredResource).run.runid === runid)
      this.#context.resources.set(key, value)
    return value
  }

  async #revisionOf(cell: Cell): Promise<number | undefined> {
    const { values } = await readKeys(this.#context.connections.etcd, [keys.actor(cell.type, cell.name)])
    return values[0]?.modRevision
  }

  async #stillOwned(): Promise<boolean> {
    const { values } = await readKeys(this.#context.connections.etcd, [keys.partitionClaim(this.partition)])
    return values[0]?.createRevision === this.token
  }

  /** Marks an inbox message applied (the ack floor may move) and answers whoever waits for it. */
  #finish(item: AnsweredItem, reply: (() => EventReply) | undefined): void {
    if (item.kind === 'request') {
      if (!reply) return
      const answer = reply()
      item.respond({ ...answer, body: { ...answer.body, id: item.event.id } })
      return
    }
    this.#acks.done(item.seq)
    this.#context.backlog.release()
    if (!item.replyTo || !reply) return
    const answer = reply()
    this.#context.connections.nats.publish(
      item.replyTo,
      JSON.stringify({ ...answer, body: { ...answer.body, id: item.event.id } }),
    )
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

  /**
   * Arms every durable timer due within the horizon, then scans again after half of it. A scan
   * that fails (etcd unreachable) is tried again sooner, whatever the error: a timer due during an
   * outage fires once the store answers again, late but once.
   */
  async #scanTimers(): Promise<void> {
    if (this.#stopped) return
    const { clock, timerHorizonMs } = this.#context
    let nextScanMs = timerHorizonMs / 2
    try {
      const prefix = keys.timersOfPartition(this.partition)
      const until = `${prefix}${String(clock.now() + timerHorizonMs + 1).padStart(15, '0')}`
      for (const stored of await readRange(this.#context.connections.etcd, prefix, until)) {
        const parsed = parseTimerKey(stored.key)
        if (parsed) this.scheduleTimer(parsed.type, parsed.name, parsed.dueAt, parsed.id)
      }
      this.#failedScans = 0
    } catch (error) {
      this.#failedScans++
      nextScanMs = Math.min(nextScanMs, backoffMs(this.#failedScans, { baseMs: 200, maxMs: 5000 }))
      this.#context.logger.warn('timer scan failed; scanning again soon', {
        partition: this.partition,
        error: String(error),
      })
    } finally {
      if (!this.#stopped) this.#scanTimer = clock.setTimeout(() => void this.#scanTimers(), nextScanMs)
    }
  }

  /** Stops taking events, lets the batches in flight finish, and forgets this partition's state. */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#sync?.unsubscribe()
    this.#work?.unsubscribe()
    this.#written?.unsubscribe()
    this.#context.clock.clearTimeout(this.#scanTimer)
    for (const handle of this.#timers.values()) this.#context.clock.clearTimeout(handle)
    this.#timers.clear()
    this.#context.clock.clearTimeout(this.#stallTimer)
    this.#stopping.abort(new Error('the partition is stopping'))
    await this.#reseating
    await this.#messages?.close().catch(() => {})
    await this.#loop?.catch(() => {})
    // A batch waiting on etcd is not waited for past the bound: its commit is fenced by the claim,
    // and whatever it did not answer goes to the next owner.
    let bound: NodeJS.Timeout | undefined
    await Promise.race([
      Promise.allSettled([...this.#drains]),
      new Promise((resolve) => (bound = setTimeout(resolve, STOP_BOUND_MS))),
    ])
    clearTimeout(bound)
    // Messages still queued go unacked: the next owner gets them again.
    for (const cell of this.#cells.values())
      for (const item of cell.queue) if (item.kind === 'inbox') this.#context.backlog.release()
    this.#cells.clear()
    this.#context.cache.deleteWhere((key) => {
      const [type, name] = key.split('/')
      return partitionOf(type!, name!) === this.partition
    })
  }
}
