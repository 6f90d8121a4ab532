import { randomUUID } from 'node:crypto'
import type { IRequestOp } from 'etcd3'
import type { Connections } from './connections.ts'
import type { ConveyorEvent } from '../definitions/objects.ts'
import { keys, headers } from './keys.ts'
import { op, readPrefix } from './etcd-ops.ts'
import { faultPoint } from './faults.ts'
import { encodeLogEnd } from './log-lines.ts'
import type { Logger } from './logger.ts'
import { StreamFullError } from './stream-publisher.ts'

/** One message of an outbox entry: an event, or the end marker of a run's log. */
export type OutboxMessage =
  | { readonly subject: string; readonly event: ConveyorEvent }
  | {
      readonly subject: string
      readonly logEnd: { readonly id: string; readonly success: boolean; readonly message: string }
    }

/** Events of one commit, waiting in etcd until JetStream has acknowledged them. */
export interface OutboxEntry {
  readonly key: string
  readonly messages: readonly OutboxMessage[]
}

interface StoredEntry {
  readonly messages: readonly OutboxMessage[]
}

/** `uid:revision`, plus the actor's sequence for transitions (several can share one commit). */
export function messageId(event: ConveyorEvent): string {
  if (event.kind === 'transitioned') return `${event.uid}:${event.revision}:${event.seq}`
  // One commit can emit several step events (a result, the dispatches it unblocks, a run end).
  if (event.step) return `${event.uid}:${event.revision}:${event.kind}:${event.step.id}`
  if (event.kind === 'run.finished') return `${event.uid}:${event.revision}:${event.kind}`
  // Several drivers' results can share one commit.
  if (event.kind === 'driver.result') return `${event.uid}:${event.revision}:${event.kind}:${event.driver}`
  return `${event.uid}:${event.revision}`
}

export interface OutboxOptions {
  /** How often leftover entries (a crashed writer's) are republished. @default 5000 */
  readonly sweepIntervalMs?: number
}

/** Sets the commit revision into an event (and into the object it carries). */
function stamp(event: ConveyorEvent, revision: number): ConveyorEvent {
  const object = event.object
  if (object === undefined || event.kind === 'deleted' || event.kind === 'definition.deleted')
    return { ...event, revision }
  return { ...event, revision, object: { ...object, metadata: { ...object.metadata, revision } } as typeof object }
}

/**
 * The transactional outbox. A writer puts `entry()` into the same etcd transaction as its change;
 * after the commit, `publish()` sends the event to JetStream with message id `uid:revision` and
 * deletes the entry in a batch. Whatever a crash leaves behind, `sweep()` republishes; JetStream's
 * duplicate window drops a second copy.
 */
export class Outbox {
  readonly #connections: Connections
  readonly #logger: Logger
  readonly #sweepIntervalMs: number
  #toDelete: string[] = []
  #deleteTimer: NodeJS.Timeout | undefined
  #sweepTimer: NodeJS.Timeout | undefined
  #lastSweepRevision = 0
  #sweeping: Promise<number> | undefined
  #closed = false
  readonly #background = new Set<Promise<unknown>>()

  constructor(connections: Connections, logger: Logger, options: OutboxOptions = {}) {
    this.#connections = connections
    this.#logger = logger
    this.#sweepIntervalMs = options.sweepIntervalMs ?? 5000
  }

  entry(subject: string, event: ConveyorEvent): { entry: OutboxEntry; op: IRequestOp } {
    return this.entryOf([{ subject, event }])
  }

  /** An entry holding several messages, published in order. */
  entryOf(messages: readonly OutboxMessage[]): { entry: OutboxEntry; op: IRequestOp } {
    const key = keys.outbox(`${Date.now().toString(36)}-${randomUUID()}`)
    const stored: StoredEntry = { messages }
    return { entry: { key, messages }, op: op.put(key, JSON.stringify(stored)) }
  }

  /** Publishes committed entries, in order. Never throws: what fails stays in etcd for the sweeper. */
  async publish(entries: readonly OutboxEntry[], revision: number): Promise<void> {
    faultPoint('crash-after-commit')
    await Promise.all(entries.map((entry) => this.#publishEntry(entry.key, entry.messages, revision)))
  }

  async #publishEntry(key: string, messages: readonly OutboxMessage[], revision: number): Promise<void> {
    try {
      // Sent in call order on one connection, so JetStream stores them in this order.
      await Promise.all(messages.map((message) => this.#send(message, revision)))
      this.#scheduleDelete(key)
    } catch (error) {
      this.#logger.warn('publish failed; the outbox sweeper will retry', {
        subject: messages[0]?.subject,
        error: String(error),
      })
    }
  }

  /**
   * Publishes without making the caller wait: the commit is already durable and the entry stays
   * in etcd until JetStream acknowledges, so an API answer need not wait for the publish.
   */
  publishInBackground(entries: readonly OutboxEntry[], revision: number): void {
    const publishing = this.publish(entries, revision)
    this.#background.add(publishing)
    void publishing.finally(() => this.#background.delete(publishing))
  }

  async #send(message: OutboxMessage, revision: number): Promise<void> {
    if ('logEnd' in message) {
      const end = encodeLogEnd(message.logEnd.success, message.logEnd.message)
      await this.#connections.publisher.publish(message.subject, end.body, {
        msgID: message.logEnd.id,
        headers: end.headers,
      })
      return
    }
    const event = stamp(message.event, revision)
    await this.#connections.publisher.publish(message.subject, JSON.stringify(event), {
      msgID: messageId(event),
      headers: { [headers.kind]: event.kind },
    })
  }

  #scheduleDelete(key: string): void {
    this.#toDelete.push(key)
    if (this.#toDelete.length >= 100) void this.#flushDeletes()
    else this.#deleteTimer ??= setTimeout(() => void this.#flushDeletes(), 50)
  }

  async #flushDeletes(): Promise<void> {
    clearTimeout(this.#deleteTimer)
    this.#deleteTimer = undefined
    while (this.#toDelete.length > 0) {
      const chunk = this.#toDelete.splice(0, 120)
      try {
        await this.#connections.etcd.kv.txn({ success: chunk.map((key) => op.delete(key)) })
      } catch (error) {
        // Harmless: the sweeper republishes (deduplicated) and deletes them later.
        this.#logger.warn('outbox cleanup failed', { error: String(error) })
        return
      }
    }
  }

  /**
   * Republishes entries that have waited at least one sweep interval (all of them on the first
   * sweep of a process, which is how a restart recovers a crashed writer's events).
   */
  sweep(): Promise<number> {
    this.#sweeping ??= this.#sweepOnce().finally(() => {
      this.#sweeping = undefined
    })
    return this.#sweeping
  }

  async #sweepOnce(): Promise<number> {
    const threshold = this.#lastSweepRevision === 0 ? Number.POSITIVE_INFINITY : this.#lastSweepRevision
    let published = 0
    let startAfter: string | undefined
    let revision = 0
    sweep: for (;;) {
      // Pages are sized by the entries' bytes (an entry carries whole resources), so a backlog of
      // big ones never asks etcd for more than the client takes.
      const page = await readPrefix(this.#connections.etcd, keys.outboxes(), {
        limit: 500,
        ...(startAfter ? { startAfter } : {}),
      })
      revision ||= page.revision
      for (const stored of [...page.values].sort((a, b) => a.modRevision - b.modRevision)) {
        if (stored.modRevision > threshold) continue
        try {
          const entry = JSON.parse(stored.value) as StoredEntry
          for (const message of entry.messages) await this.#send(message, stored.modRevision)
          this.#scheduleDelete(stored.key)
          published++
        } catch (error) {
          this.#logger.warn('outbox entry could not be republished; retrying next sweep', {
            key: stored.key,
            error: String(error),
          })
          // A full stream refuses the rest as well; they wait, in order, for the next sweep.
          if (error instanceof StreamFullError) break sweep
        }
      }
      if (!page.more || page.values.length === 0) break
      startAfter = page.values.at(-1)!.key
    }
    this.#lastSweepRevision = revision
    if (published > 0) this.#logger.info('outbox sweep republished events', { published })
    await this.#flushDeletes()
    return published
  }

  /** Sweeps now, then every interval, until closed. */
  async start(): Promise<void> {
    await this.sweep().catch((error) => this.#logger.warn('outbox sweep failed', { error: String(error) }))
    const tick = (): void => {
      if (this.#closed) return
      this.#sweepTimer = setTimeout(() => {
        void this.sweep()
          .catch((error) => this.#logger.warn('outbox sweep failed', { error: String(error) }))
          .finally(tick)
      }, this.#sweepIntervalMs)
    }
    tick()
  }

  async close(): Promise<void> {
    this.#closed = true
    clearTimeout(this.#sweepTimer)
    await this.#sweeping?.catch(() => {})
    await Promise.allSettled([...this.#background])
    await this.#flushDeletes()
  }
}
