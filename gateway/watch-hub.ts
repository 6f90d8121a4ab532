import type { Etcd3, IWatchResponse, Watcher } from 'etcd3'
import type { Logger } from '../runtime/logger.ts'
import { keys } from '../runtime/keys.ts'
import { isCompactedError } from '../runtime/errors.ts'
import { DEFAULT_STREAM_LIMITS, STREAM_LIMIT_ENV } from '../runtime/config.ts'
import { ChangeBuffer } from './change-buffer.ts'
import { changeOf, type ResourceChange } from './resource-change.ts'
import { listPages, type ListPage } from './watch-list.ts'

export type { ResourceChange } from './resource-change.ts'
export type { ListPage } from './watch-list.ts'

/** Why a watch ended: `compacted` (list again), `unavailable` (resume later), `too-slow` (the subscriber fell behind what the gateway keeps; resume from the last change it got). */
export type WatchFailure = 'compacted' | 'unavailable' | 'too-slow'

/** What a watch subscriber is told: changes in order, or why the watch ended. */
export interface WatchListener {
  /** The next change; answering `false` pauses the subscriber (after the rest of this revision) until `resume()`. */
  change(change: ResourceChange): boolean | void
  fail(code: WatchFailure, message: string): void
}

/** A running subscription of a watch. */
export interface WatchSubscription {
  /** Sends what a paused subscriber missed meanwhile, then live changes again. */
  resume(): void
  stop(): void
}

/** A type's shared etcd watch lingers this long without subscribers, so quick reconnects can resume from it. */
const LINGER_MS = 60_000
/** A dedicated watch (a resume from further back) stops reading etcd while this much waits for its subscriber. */
const DEDICATED_BYTES = 4 * 1024 * 1024

/** The hub's byte budget for buffered changes, over every watch. */
interface Budget {
  charge(bytes: number): void
  release(bytes: number): void
}

interface Subscriber {
  /** The sequence (in the buffer) of the next change to give it. */
  next: number
  /** Changes up to this revision it already has (it joined there). */
  readonly after: number
  /** The revision of the last change given. */
  last: number
  /** It asked to pause: it gets the rest of revision `last`, then nothing until resumed. */
  pausing: boolean
}

/**
 * One etcd watch over a type's resources from a start revision, with a buffer of changes. A
 * shared (joinable) watch keeps recent changes so a subscriber can join from any revision it still
 * covers, with no gap and no repeat; a dedicated one keeps only what its subscriber has not taken
 * yet, and stops reading etcd while that is much. A paused subscriber is sent the rest from the
 * buffer when it resumes; one the buffer no longer covers is told `too-slow`.
 */
class TypeWatch {
  readonly startRevision: number
  readonly joinable: boolean
  readonly buffer = new ChangeBuffer<ResourceChange>()
  readonly #etcd: Etcd3
  readonly #type: string
  readonly #logger: Logger
  readonly #budget: Budget
  readonly #subscribers = new Map<WatchListener, Subscriber>()
  #evictedThrough = 0
  /** The revision the etcd watch (re)starts from: one past the last whole revision received. */
  #next: number
  #watcher: Watcher | undefined
  #generation = 0
  #suspended = false
  #fragmented = false
  #failed: { code: WatchFailure; message: string } | undefined
  #lingering: NodeJS.Timeout | undefined
  onIdle: (() => void) | undefined
  onClosed: (() => void) | undefined

  constructor(etcd: Etcd3, type: string, startRevision: number, joinable: boolean, budget: Budget, logger: Logger) {
    this.#etcd = etcd
    this.#type = type
    this.#logger = logger
    this.#budget = budget
    this.startRevision = startRevision
    this.joinable = joinable
    this.#next = startRevision
    this.#watch()
  }

  #watch(): void {
    const generation = ++this.#generation
    const current = (): boolean => generation === this.#generation && !this.#failed
    const builder = this.#etcd
      .watch()
      .prefix(keys.resources(this.#type))
      .withPreviousKV()
      .startRevision(String(this.#next))
    // etcd splits a response over its request limit (a catch-up from far back) into fragments:
    // one response could otherwise exceed gRPC's message limit and end every watch of the client.
    ;(builder as unknown as { request: { fragment?: boolean } }).request.fragment = true
    void builder
      .create()
      .then((watcher) => {
        if (!current() || (this.#subscribers.size === 0 && !this.onIdle)) return void watcher.cancel().catch(() => {})
        this.#watcher = watcher
        watcher.on('data', (response: IWatchResponse) => {
          if (current()) this.#receive(response)
        })
        watcher.on('error', (error: Error) => {
          // etcd cancelled the watch, so it must not be cancelled again (the client would not find it).
          if (this.#watcher === watcher) this.#watcher = undefined
          if (!current()) return
          void this.#explain(error).then(([code, message]) => {
            this.#logger.warn('resource watch ended', { type: this.#type, code, error: error.message })
            this.#fail(code, message)
          })
        })
      })
      .catch((error: unknown) => {
        if (current()) void this.#explain(error).then(([code, message]) => this.#fail(code, message))
      })
  }

  /** etcd cancels a watch from a compacted revision without always saying why: a read at that revision tells. */
  async #explain(error: unknown): Promise<['compacted' | 'unavailable', string]> {
    const compacted =
      isCompactedError(error) ||
      (await this.#etcd.kv
        .range({ key: Buffer.from(keys.resources('')), revision: String(this.#next) })
        .then(() => false, isCompactedError))
    return compacted
      ? ['compacted', `revision ${this.#next - 1} has been compacted`]
      : ['unavailable', `the watch was interrupted: ${error instanceof Error ? error.message : String(error)}`]
  }

  /** True when a subscriber resuming after `revision` gets every later change from here. */
  covers(revision: number): boolean {
    return this.joinable && !this.#failed && revision + 1 >= this.startRevision && revision >= this.#evictedThrough
  }

  /** Sends the buffered changes after `revision`, then live ones. */
  join(listener: WatchListener, revision: number): WatchSubscription {
    clearTimeout(this.#lingering)
    const subscriber: Subscriber = {
      next: this.buffer.seqAfter(revision),
      after: revision,
      last: revision,
      pausing: false,
    }
    this.#subscribers.set(listener, subscriber)
    this.#run(listener, subscriber)
    this.#afterDelivery()
    return {
      resume: () => {
        if (this.#subscribers.get(listener) !== subscriber || !subscriber.pausing) return
        subscriber.pausing = false
        this.#run(listener, subscriber)
        this.#afterDelivery()
      },
      stop: () => {
        if (this.#subscribers.get(listener) !== subscriber) return
        this.#subscribers.delete(listener)
        this.#afterDelivery()
        if (this.#subscribers.size > 0) return
        if (this.onIdle) this.#lingering = setTimeout(() => this.onIdle?.(), LINGER_MS)
        else this.close()
      },
    }
  }

  /** Gives a subscriber the buffered changes it has not had, until it pauses at the end of a revision. */
  #run(listener: WatchListener, subscriber: Subscriber): void {
    while (subscriber.next < this.buffer.endSeq && this.#subscribers.get(listener) === subscriber) {
      const change = this.buffer.at(subscriber.next)!
      if (subscriber.pausing && change.revision !== subscriber.last) return
      subscriber.next++
      if (change.revision <= subscriber.after) continue
      subscriber.last = change.revision
      if (listener.change(change) === false) subscriber.pausing = true
    }
  }

  #receive(response: IWatchResponse): void {
    this.#fragmented = response.fragment === true
    const events = response.events
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!
      const revision = Number(event.kv.mod_revision)
      const endsRevision =
        i + 1 < events.length ? Number(events[i + 1]!.kv.mod_revision) !== revision : !this.#fragmented
      const change = changeOf(event as never, endsRevision)
      if (endsRevision) this.#next = Math.max(this.#next, revision + 1)
      if (!change) continue
      this.buffer.push(change)
      for (const [listener, subscriber] of this.#subscribers) this.#run(listener, subscriber)
      // Charged once every subscriber that can take it has: only one that is behind can lose it.
      this.#budget.charge(change.bytes)
    }
    this.#afterDelivery()
  }

  /** A dedicated watch forgets what its subscribers have, and reads etcd only while little waits. */
  #afterDelivery(): void {
    if (this.joinable || this.#failed) return
    let next = this.buffer.endSeq
    for (const subscriber of this.#subscribers.values()) next = Math.min(next, subscriber.next)
    while (this.buffer.firstSeq < next) this.#budget.release(this.buffer.shift()!.bytes)
    // Not within a revision etcd sent in fragments: the watch restarts after the last whole one.
    if (!this.#suspended && !this.#fragmented && this.buffer.bytes > DEDICATED_BYTES) {
      this.#suspended = true
      this.#generation++
      void this.#watcher?.cancel().catch(() => {})
      this.#watcher = undefined
    } else if (this.#suspended && this.buffer.bytes < DEDICATED_BYTES / 2) {
      this.#suspended = false
      this.#watch()
    }
  }

  /** Drops the oldest buffered change (the budget is over); a subscriber still missing it can no longer be served. */
  evictOldest(): void {
    const seq = this.buffer.firstSeq
    const change = this.buffer.shift()
    if (!change) return
    this.#budget.release(change.bytes)
    this.#evictedThrough = change.revision
    for (const [listener, subscriber] of [...this.#subscribers])
      if (
        subscriber.next <= seq &&
        change.revision > subscriber.after &&
        this.#subscribers.get(listener) === subscriber
      ) {
        this.#subscribers.delete(listener)
        listener.fail(
          'too-slow',
          `the subscriber fell further behind than the gateway keeps (${STREAM_LIMIT_ENV.resumeBufferBytes})`,
        )
      }
  }

  #fail(code: WatchFailure, message: string): void {
    if (this.#failed) return
    this.#failed = { code, message }
    const subscribers = [...this.#subscribers.keys()]
    this.#subscribers.clear()
    for (const listener of subscribers) listener.fail(code, message)
    this.onIdle?.()
    this.close()
  }

  close(): void {
    clearTimeout(this.#lingering)
    this.#failed ??= { code: 'unavailable', message: 'closed' }
    this.#generation++
    void this.#watcher?.cancel().catch(() => {})
    this.#watcher = undefined
    for (let change = this.buffer.shift(); change; change = this.buffer.shift()) this.#budget.release(change.bytes)
    this.onClosed?.()
  }
}

export interface WatchHubOptions {
  /** Bytes of changes kept over all types for subscribers that resume or lag. @default 64 MiB */
  readonly resumeBufferBytes?: number
}

/**
 * Resource watches of one gateway: a shared etcd watch per type (fanned out to every subscriber
 * that can join it) and a dedicated one for a subscriber resuming from further back. What they
 * buffer is bounded in bytes over all types: past the budget the shared watches' oldest changes
 * go first (a dedicated watch holds at most a few MiB its subscriber has not taken yet).
 */
export class WatchHub {
  readonly #etcd: Etcd3
  readonly #logger: Logger
  readonly #shared = new Map<string, TypeWatch>()
  readonly #watches = new Set<TypeWatch>()
  readonly #maxBytes: number
  #bytes = 0
  readonly #budget: Budget = {
    charge: (bytes) => {
      this.#bytes += bytes
      this.#trim()
    },
    release: (bytes) => {
      this.#bytes -= bytes
    },
  }

  constructor(etcd: Etcd3, logger: Logger, options: WatchHubOptions = {}) {
    this.#etcd = etcd
    this.#logger = logger
    this.#maxBytes = options.resumeBufferBytes ?? DEFAULT_STREAM_LIMITS.resumeBufferBytes
  }

  /** Bytes of changes buffered now, over all types. */
  get bufferedBytes(): number {
    return this.#bytes
  }

  /** Evicts the oldest buffered changes of the joinable watches while the budget is over. */
  #trim(): void {
    while (this.#bytes > this.#maxBytes) {
      let oldest: TypeWatch | undefined
      for (const watch of this.#watches) {
        const revision = watch.joinable ? watch.buffer.oldest?.revision : undefined
        if (revision !== undefined && (!oldest || revision < oldest.buffer.oldest!.revision)) oldest = watch
      }
      if (!oldest) return
      oldest.evictOldest()
    }
  }

  /** The current resources of a type, page by page, at one revision (see `listPages`). */
  listPages(
    type: string,
    pageBytes: number,
    keep?: (labels: Readonly<Record<string, string>>) => boolean,
  ): AsyncGenerator<ListPage> {
    return listPages(this.#etcd, type, pageBytes, keep)
  }

  /** Every change of the type after `revision`, in order. */
  subscribe(type: string, revision: number, listener: WatchListener): WatchSubscription {
    let shared = this.#shared.get(type)
    // The shared watch started later than, or no longer buffers, what this subscriber needs: it gets its own.
    if (shared && !shared.covers(revision)) return this.#open(type, revision, false).join(listener, revision)
    if (!shared) {
      shared = this.#open(type, revision, true)
      const created = shared
      created.onIdle = () => {
        if (this.#shared.get(type) === created) this.#shared.delete(type)
        created.close()
      }
      this.#shared.set(type, created)
    }
    return shared.join(listener, revision)
  }

  #open(type: string, revision: number, joinable: boolean): TypeWatch {
    const watch = new TypeWatch(this.#etcd, type, revision + 1, joinable, this.#budget, this.#logger)
    this.#watches.add(watch)
    watch.onClosed = () => this.#watches.delete(watch)
    return watch
  }

  close(): void {
    for (const watch of [...this.#watches]) watch.close()
    this.#shared.clear()
  }
}
