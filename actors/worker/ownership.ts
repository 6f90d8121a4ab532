import { createHash } from 'node:crypto'
import type { Etcd3, Lease, Watcher } from 'etcd3'
import { keys, PARTITIONS } from '../../runtime/keys.ts'
import { compare, readPrefix } from '../../runtime/etcd-ops.ts'
import type { Logger } from '../../runtime/logger.ts'

/** What a worker does when it gains or loses a partition. `token` fences its writes. */
export interface PartitionHooks {
  acquire(partition: number, token: number): Promise<void>
  release(partition: number): Promise<void>
}

/** A well-mixed score: a weak hash (FNV of similar ids) lets one worker win every partition or none. */
const score = (worker: string, partition: number): number =>
  createHash('sha256').update(`${worker}#${partition}`).digest().readUInt32BE(0)

/** Rendezvous hashing: each partition goes to the live worker with the highest score, so a join or leave moves few partitions. */
export function ownerOf(partition: number, workers: readonly string[]): string | undefined {
  let best: string | undefined
  let bestScore = -1
  for (const worker of workers) {
    const s = score(worker, partition)
    if (s > bestScore || (s === bestScore && worker < best!)) {
      best = worker
      bestScore = s
    }
  }
  return best
}

/**
 * Partition ownership through etcd: each worker registers under a lease and claims the
 * partitions rendezvous hashing gives it, with claim keys bound to the same lease. A worker
 * that dies loses its lease, its claims vanish, and the survivors take them over.
 */
export class Ownership {
  readonly #etcd: Etcd3
  readonly #id: string
  readonly #ttlSeconds: number
  readonly #hooks: PartitionHooks
  readonly #logger: Logger
  readonly #owned = new Map<number, number>()
  #lease: Lease | undefined
  #leaseId = ''
  #watchers: Watcher[] = []
  #running: Promise<void> | undefined
  #again = false
  #closed = false
  #debounce: NodeJS.Timeout | undefined
  #periodic: NodeJS.Timeout | undefined

  constructor(etcd: Etcd3, id: string, ttlSeconds: number, hooks: PartitionHooks, logger: Logger) {
    this.#etcd = etcd
    this.#id = id
    this.#ttlSeconds = ttlSeconds
    this.#hooks = hooks
    this.#logger = logger
  }

  get owned(): ReadonlyMap<number, number> {
    return this.#owned
  }

  async start(): Promise<void> {
    await this.#register()
    for (const prefix of [keys.workers(), keys.partitionClaims()]) {
      const watcher = await this.#etcd.watch().prefix(prefix).create()
      watcher.on('put', () => this.#schedule())
      watcher.on('delete', () => this.#schedule())
      watcher.on('connected', () => this.#schedule())
      watcher.on('error', (error) => this.#logger.warn('ownership watch error', { error: String(error) }))
      this.#watchers.push(watcher)
    }
    await this.reconcile()
    // Watches drive rebalancing; this also retries one that failed (a timeout under load).
    this.#periodic = setInterval(() => this.#schedule(), Math.max(1000, this.#ttlSeconds * 1000))
    this.#periodic.unref()
  }

  async #register(): Promise<void> {
    const lease = this.#etcd.lease(this.#ttlSeconds, { autoKeepAlive: true })
    this.#leaseId = await lease.grant()
    this.#lease = lease
    lease.on('lost', (error) => {
      if (this.#closed || this.#lease !== lease) return
      this.#logger.warn('worker lease lost; giving up every partition and registering again', { error: String(error) })
      this.#schedule()
    })
    await this.#etcd.kv.put({
      key: Buffer.from(keys.worker(this.#id)),
      value: Buffer.from(JSON.stringify({ id: this.#id, since: new Date().toISOString() })),
      lease: this.#leaseId,
    })
  }

  async #recover(): Promise<void> {
    const old = this.#lease
    this.#lease = undefined
    void old?.revoke().catch(() => {})
    for (const partition of [...this.#owned.keys()]) {
      this.#owned.delete(partition)
      await this.#hooks.release(partition).catch(() => {})
    }
    while (!this.#closed) {
      try {
        await this.#register()
        this.#schedule()
        return
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 500))
      }
    }
  }

  #schedule(): void {
    if (this.#closed) return
    clearTimeout(this.#debounce)
    this.#debounce = setTimeout(
      () =>
        void this.reconcile().catch((error) =>
          this.#logger.warn('rebalance failed; retrying', { error: String(error) }),
        ),
      20,
    )
  }

  /** Brings owned partitions in line with the live workers; serialised, re-run when asked during a run. */
  reconcile(): Promise<void> {
    if (this.#running) {
      this.#again = true
      return this.#running
    }
    this.#running = (async () => {
      do {
        this.#again = false
        await this.#reconcileOnce()
      } while (this.#again && !this.#closed)
    })().finally(() => {
      this.#running = undefined
    })
    return this.#running
  }

  async #reconcileOnce(): Promise<void> {
    if (this.#closed || !this.#lease) return
    const before = this.#owned.size
    await this.#rebalance()
    if (this.#owned.size !== before) this.#logger.info('partitions rebalanced', { owned: this.#owned.size })
  }

  async #rebalance(): Promise<void> {
    const workers = (await readPrefix(this.#etcd, keys.workers())).values.map((v) => v.key.slice(keys.workers().length))
    const claims = new Map((await readPrefix(this.#etcd, keys.partitionClaims())).values.map((v) => [v.key, v]))
    if (!workers.includes(this.#id)) {
      // Our lease expired (a long pause, or etcd was slow): its claims are gone with it. Start over.
      this.#logger.warn('this worker is no longer registered (its lease expired); registering again')
      await this.#recover()
      return
    }
    for (const [partition] of [...this.#owned]) {
      const claim = claims.get(keys.partitionClaim(partition))
      const lost = !claim || claim.createRevision !== this.#owned.get(partition)
      if (lost || ownerOf(partition, workers) !== this.#id) {
        await this.#release(partition, !lost)
      }
    }
    for (let partition = 0; partition < PARTITIONS; partition++) {
      if (
        this.#owned.has(partition) ||
        ownerOf(partition, workers) !== this.#id ||
        claims.has(keys.partitionClaim(partition))
      )
        continue
      const key = Buffer.from(keys.partitionClaim(partition))
      const response = await this.#etcd.kv.txn({
        compare: [compare.absent(keys.partitionClaim(partition))],
        success: [{ request_put: { key, value: Buffer.from(this.#id), lease: this.#leaseId } }],
      })
      if (!response.succeeded) continue
      const token = Number(response.header.revision)
      this.#owned.set(partition, token)
      try {
        await this.#hooks.acquire(partition, token)
      } catch (error) {
        this.#logger.warn('could not take a partition; releasing it', { partition, error: String(error) })
        await this.#release(partition, true)
      }
    }
  }

  async #release(partition: number, deleteClaim: boolean): Promise<void> {
    const token = this.#owned.get(partition)
    this.#owned.delete(partition)
    await this.#hooks
      .release(partition)
      .catch((error) => this.#logger.warn('partition release failed', { partition, error: String(error) }))
    if (!deleteClaim || token === undefined) return
    const key = Buffer.from(keys.partitionClaim(partition))
    await this.#etcd.kv
      .txn({
        compare: [compare.createRevision(keys.partitionClaim(partition), token)],
        success: [{ request_delete_range: { key } }],
      })
      .catch(() => {})
  }

  /** Hands every partition back (so others take over at once) and leaves the membership. */
  async close(): Promise<void> {
    if (this.#closed) return
    await this.#running?.catch(() => {})
    this.#closed = true
    clearTimeout(this.#debounce)
    clearInterval(this.#periodic)
    for (const watcher of this.#watchers) await watcher.cancel().catch(() => {})
    await Promise.all([...this.#owned.keys()].map((partition) => this.#release(partition, true)))
    await this.#lease?.revoke().catch(() => {})
  }
}
