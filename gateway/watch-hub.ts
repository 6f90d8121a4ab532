import type { Etcd3, IKeyValue, IWatchResponse, Watcher } from 'etcd3'
import type { Logger } from '../runtime/logger.ts'
import { keys } from '../runtime/keys.ts'
import { readPrefix } from '../runtime/etcd-ops.ts'
import { isCompactedError } from '../runtime/errors.ts'
import { presentDesired, type StoredResource } from '../runtime/resource-view.ts'

/** One committed change of a resource, as watchers receive it. */
export interface ResourceChange {
  readonly kind: 'created' | 'updated' | 'deleted'
  /** etcd revision of the commit: strictly increasing along a watch; resume after it. */
  readonly revision: number
  readonly name: string
  /** The resource as stored (for `deleted`: as it was); `metadata.revision` is the change's revision. */
  readonly object: Record<string, unknown>
  readonly labels: Readonly<Record<string, string>>
}

/** What a watch subscriber is told: changes in order, or why the watch ended. */
export interface WatchListener {
  change(change: ResourceChange): void
  /** The watch ended: `compacted` (resume impossible, list again) or `unavailable` (resume later). */
  fail(code: 'compacted' | 'unavailable', message: string): void
}

/** Changes kept per type for subscribers that resume after a disconnect. */
const BUFFER = 20_000
/** A type's shared etcd watch lingers this long without subscribers, so quick reconnects can resume from it. */
const LINGER_MS = 60_000

function changeOf(event: { type: 'Put' | 'Delete'; kv: IKeyValue; prev_kv?: IKeyValue }): ResourceChange | undefined {
  const source = event.type === 'Delete' ? event.prev_kv : event.kv
  if (!source || source.value.length === 0) return undefined
  let stored: StoredResource
  try {
    stored = JSON.parse(source.value.toString()) as StoredResource
  } catch {
    return undefined
  }
  const revision = Number(event.kv.mod_revision)
  const object = presentDesired(stored, revision)
  const kind =
    event.type === 'Delete' ? 'deleted' : event.kv.create_revision === event.kv.mod_revision ? 'created' : 'updated'
  return {
    kind,
    revision,
    name: stored.name,
    object: object as unknown as Record<string, unknown>,
    labels: stored.metadata.labels ?? {},
  }
}

/**
 * One etcd watch over a type's resources from a start revision, with a buffer of recent changes
 * so a subscriber can join from any revision the buffer still covers, with no gap and no repeat.
 */
class TypeWatch {
  readonly startRevision: number
  /** Each listener with the revision it has everything up to: a listener that joined ahead of the etcd watch skips what it already has. */
  readonly #listeners = new Map<WatchListener, number>()
  readonly #buffer: ResourceChange[] = []
  #evictedThrough = 0
  #watcher: Watcher | undefined
  #failed: { code: 'compacted' | 'unavailable'; message: string } | undefined
  #lingering: NodeJS.Timeout | undefined
  onIdle: (() => void) | undefined

  constructor(etcd: Etcd3, type: string, startRevision: number, logger: Logger) {
    this.startRevision = startRevision
    void etcd
      .watch()
      .prefix(keys.resources(type))
      .withPreviousKV()
      .startRevision(String(startRevision))
      .create()
      .then((watcher) => {
        this.#watcher = watcher
        if (this.#failed || (this.#listeners.size === 0 && !this.onIdle)) void watcher.cancel()
        watcher.on('data', (response: IWatchResponse) => this.#receive(response))
        watcher.on('error', (error: Error) => {
          // etcd cancelled the watch, so it must not be cancelled again (the client would not find it).
          this.#watcher = undefined
          void this.#explain(etcd, error).then(([code, message]) => {
            logger.warn('resource watch ended', { type, code, error: error.message })
            this.#fail(code, message)
          })
        })
      })
      .catch((error: unknown) => void this.#explain(etcd, error).then(([code, message]) => this.#fail(code, message)))
  }

  /** etcd cancels a watch from a compacted revision without always saying why: a read at that revision tells. */
  async #explain(etcd: Etcd3, error: unknown): Promise<['compacted' | 'unavailable', string]> {
    const compacted =
      isCompactedError(error) ||
      (await etcd.kv
        .range({ key: Buffer.from(keys.resources('')), revision: String(this.startRevision) })
        .then(() => false, isCompactedError))
    return compacted
      ? ['compacted', `revision ${this.startRevision - 1} has been compacted`]
      : ['unavailable', `the watch was interrupted: ${error instanceof Error ? error.message : String(error)}`]
  }

  /** True when a subscriber resuming after `revision` gets every later change from here. */
  covers(revision: number): boolean {
    return !this.#failed && revision + 1 >= this.startRevision && revision >= this.#evictedThrough
  }

  /** Sends the buffered changes after `revision`, then live ones. */
  join(listener: WatchListener, revision: number): () => void {
    clearTimeout(this.#lingering)
    for (const change of this.#buffer) if (change.revision > revision) listener.change(change)
    this.#listeners.set(listener, revision)
    return () => {
      this.#listeners.delete(listener)
      if (this.#listeners.size === 0 && this.onIdle) this.#lingering = setTimeout(() => this.onIdle?.(), LINGER_MS)
      else if (this.#listeners.size === 0) this.close()
    }
  }

  #receive(response: IWatchResponse): void {
    for (const event of response.events) {
      const change = changeOf(event as never)
      if (!change) continue
      this.#buffer.push(change)
      if (this.#buffer.length > BUFFER) this.#evictedThrough = this.#buffer.shift()!.revision
      for (const [listener, floor] of this.#listeners) if (change.revision > floor) listener.change(change)
    }
  }

  #fail(code: 'compacted' | 'unavailable', message: string): void {
    if (this.#failed) return
    this.#failed = { code, message }
    for (const listener of this.#listeners.keys()) listener.fail(code, message)
    this.#listeners.clear()
    this.onIdle?.()
    this.close()
  }

  close(): void {
    clearTimeout(this.#lingering)
    this.#failed ??= { code: 'unavailable', message: 'closed' }
    void this.#watcher?.cancel().catch(() => {})
  }
}

/**
 * Resource watches of one gateway: a shared etcd watch per type (fanned out to every subscriber
 * that can join it) and a dedicated one for a subscriber resuming from further back.
 */
export class WatchHub {
  readonly #etcd: Etcd3
  readonly #logger: Logger
  readonly #shared = new Map<string, TypeWatch>()

  constructor(etcd: Etcd3, logger: Logger) {
    this.#etcd = etcd
    this.#logger = logger
  }

  /** The current resources of a type and the revision they were read at. */
  async list(type: string): Promise<{ items: Record<string, unknown>[]; revision: number }> {
    const items: Record<string, unknown>[] = []
    let startAfter: string | undefined
    let revision: number | undefined
    for (;;) {
      const page = await readPrefix(this.#etcd, keys.resources(type), {
        limit: 500,
        ...(startAfter ? { startAfter } : {}),
        ...(revision ? { revision } : {}),
      })
      revision ??= page.revision
      for (const value of page.values) {
        const change = changeOf({
          type: 'Put',
          kv: {
            key: Buffer.from(value.key),
            value: Buffer.from(value.value),
            mod_revision: String(value.modRevision),
            create_revision: String(value.createRevision),
          } as IKeyValue,
        })
        if (change) items.push(change.object)
      }
      if (!page.more || page.values.length === 0) return { items, revision }
      startAfter = page.values.at(-1)!.key
    }
  }

  /** Every change of the type after `revision`, in order; the returned function stops it. */
  subscribe(type: string, revision: number, listener: WatchListener): () => void {
    let shared = this.#shared.get(type)
    // The shared watch started later than, or no longer buffers, what this subscriber needs: it gets its own.
    if (shared && !shared.covers(revision)) return this.#dedicated(type, revision, listener)
    if (!shared) {
      shared = new TypeWatch(this.#etcd, type, revision + 1, this.#logger)
      const created = shared
      created.onIdle = () => {
        if (this.#shared.get(type) === created) this.#shared.delete(type)
        created.close()
      }
      this.#shared.set(type, created)
    }
    return shared.join(listener, revision)
  }

  #dedicated(type: string, revision: number, listener: WatchListener): () => void {
    const watch = new TypeWatch(this.#etcd, type, revision + 1, this.#logger)
    return watch.join(listener, revision)
  }

  close(): void {
    for (const watch of this.#shared.values()) watch.close()
    this.#shared.clear()
  }
}
