import { DeliverPolicy, type Consumer } from '@nats-io/jetstream'
import { LRUCache } from 'lru-cache'
import type { Connections } from '../runtime/connections.ts'
import { streams, subjects } from '../runtime/keys.ts'
import type { ConveyorEvent } from '../definitions/objects.ts'

/** One event of a resource's history, with its place and time in the events stream. */
export interface HistoryItem {
  readonly seq: number
  readonly time: string
  readonly kind: string
  readonly event: ConveyorEvent
}

export interface HistoryPage {
  readonly items: HistoryItem[]
  /** The sequence to read on from (`after`), when more events follow. */
  readonly next?: number
}

const RESOURCE_KINDS = new Set(['created', 'updated', 'deleted'])
/** The subject class each kind is published under (`outcome` for any other). */
const CLASS_OF: Readonly<Record<string, string>> = { 'step.dispatched': 'step', 'step.cancelled': 'cancel' }
const classOf = (kind: string): string => (RESOURCE_KINDS.has(kind) ? 'resource' : (CLASS_OF[kind] ?? 'outcome'))

/**
 * The narrowest single filter subject (all nats-server 2.9 allows) that holds every event of the
 * kinds asked for, so JetStream skips the rest: one kind of the `resource` or `outcome` class is
 * its exact subject, kinds of one class that class, anything else the whole history.
 */
export function historySubject(type: string, name: string, kinds?: ReadonlySet<string>): string {
  if (!kinds || kinds.size === 0) return subjects.history(type, name)
  const classes = new Set([...kinds].map(classOf))
  if (classes.size > 1) return subjects.history(type, name)
  const [only] = kinds
  const kindClass = [...classes][0]!
  if (kinds.size === 1 && kindClass === 'resource') return subjects.resource(type, name, only as 'created')
  if (kinds.size === 1 && kindClass === 'outcome') return subjects.outcome(type, name, only!)
  // Every subject of a class is `conveyor.ev.{class}.{partition}.{type}.{name}.{detail}`.
  return subjects.history(type, name).replace(/^conveyor\.ev\.\*\./, `conveyor.ev.${kindClass}.`)
}

/** A consumer left where a page ended, for the page after it. */
interface Parked {
  readonly consumer: Consumer
  readonly pending: number
}

export interface HistoryReaderOptions {
  /** How long a consumer waits for the next page. @default 30000 */
  readonly keepMs?: number
  /** Consumers kept waiting at most. @default 256 */
  readonly maxKept?: number
}

/**
 * Reads resource histories from the events stream through ordered consumers: a page continues
 * the consumer the page before it ended on (kept a little while), and a whole history is read
 * batch by batch through one consumer, never held in memory at once.
 */
export class HistoryReader {
  readonly #connections: Connections
  readonly #parked: LRUCache<string, Parked>

  constructor(connections: Connections, options: HistoryReaderOptions = {}) {
    this.#connections = connections
    this.#parked = new LRUCache<string, Parked>({
      max: options.maxKept ?? 256,
      ttl: options.keepMs ?? 30_000,
      ttlAutopurge: true,
      // Taken for the next page is a `delete` of ours: only what is evicted or expires goes.
      dispose: (parked, _key, reason) => {
        if (reason === 'evict' || reason === 'expire') void parked.consumer.delete().catch(() => {})
      },
    })
  }

  /** One page of a resource's events after a sequence, in stream order, at most `limit`. */
  async page(
    type: string,
    name: string,
    after: number,
    limit: number,
    kinds?: ReadonlySet<string>,
  ): Promise<HistoryPage> {
    const subject = historySubject(type, name, kinds)
    const key = `${subject} ${after}`
    const parked = this.#parked.get(key)
    if (parked) this.#parked.delete(key)
    const consumer = parked?.consumer ?? (await this.#open(subject, after))
    let pending = parked?.pending ?? (await consumer.info()).num_pending
    const items: HistoryItem[] = []
    let last = after
    try {
      // Each batch is read to its end, so the consumer's place is `last` and a next page can go on from it.
      while (pending > 0 && items.length < limit) {
        let got = 0
        for await (const item of this.#batch(consumer, Math.min(pending, limit - items.length, 256))) {
          got++
          last = item.seq
          pending = item.pending
          if (!kinds || kinds.has(item.kind)) items.push(item.item)
        }
        if (got === 0) break
      }
    } catch (error) {
      await consumer.delete().catch(() => {})
      throw error
    }
    if (pending > 0) this.#parked.set(`${subject} ${last}`, { consumer, pending })
    else await consumer.delete().catch(() => {})
    return { items, ...(pending > 0 ? { next: last } : {}) }
  }

  /** Every event of a resource of the kinds asked for, in stream order, through one consumer. */
  async *events(type: string, name: string, kinds?: ReadonlySet<string>): AsyncGenerator<HistoryItem> {
    const consumer = await this.#open(historySubject(type, name, kinds), 0)
    try {
      let pending = (await consumer.info()).num_pending
      while (pending > 0) {
        let got = 0
        for await (const item of this.#batch(consumer, Math.min(pending, 256))) {
          got++
          pending = item.pending
          if (!kinds || kinds.has(item.kind)) yield item.item
        }
        if (got === 0) break
      }
    } finally {
      await consumer.delete().catch(() => {})
    }
  }

  async #open(subject: string, after: number): Promise<Consumer> {
    return await this.#connections.js.consumers.get(streams.events, {
      filter_subjects: subject,
      ...(after > 0
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: after + 1 }
        : { deliver_policy: DeliverPolicy.All }),
    })
  }

  async *#batch(
    consumer: Consumer,
    count: number,
  ): AsyncGenerator<{ seq: number; pending: number; kind: string; item: HistoryItem }> {
    const messages = await consumer.fetch({ max_messages: count, expires: 2000 })
    for await (const message of messages) {
      const event = message.json<ConveyorEvent>()
      yield {
        seq: message.seq,
        pending: message.info.pending,
        kind: event.kind,
        item: {
          seq: message.seq,
          time: new Date(message.info.timestampNanos / 1e6).toISOString(),
          kind: event.kind,
          event,
        },
      }
    }
  }

  /** Deletes the consumers kept for next pages. */
  close(): void {
    for (const parked of this.#parked.values()) void parked.consumer.delete().catch(() => {})
    this.#parked.clear()
  }
}
