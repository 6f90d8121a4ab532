import { Etcd3 } from 'etcd3'
import { isCompactedError } from './errors.ts'
import { etcdFaultHandling } from './etcd-faults.ts'
import { etcdClientAuth } from './etcd-client-auth.ts'
import type { EtcdAuth } from './config.ts'
import type { Logger } from './logger.ts'

/** What `/ready` shows of etcd's space. */
export interface EtcdSpaceStatus {
  /** The largest database file among the members (what the quota is checked against). */
  readonly dbSizeBytes: number
  /** The part of it holding data; the rest is freed pages a defragmentation returns. */
  readonly dbSizeInUseBytes: number
  readonly quotaBytes: number
  /** Raised alarms, e.g. `NOSPACE` (etcd then refuses every write until it is disarmed). */
  readonly alarms: readonly string[]
  /** When space was last reclaimed (compaction, defragmentation, alarm disarmed), ISO time. */
  readonly lastReclaimAt?: string
}

export interface EtcdSpaceOptions {
  /** How the per-member clients sign in. @default anonymously */
  readonly auth?: EtcdAuth
  /** etcd's `--quota-backend-bytes`. @default 2 GiB (etcd's default) */
  readonly quotaBytes?: number
  /** How often the members' database sizes are checked. @default 5000 */
  readonly checkIntervalMs?: number
  /** Share of the quota whose reaching reclaims space before etcd refuses writes. @default 0.8 */
  readonly reclaimAt?: number
  /** History a reclaim ahead of time keeps (a NOSPACE reclaim keeps none). @default 5 minutes */
  readonly keepHistoryMs?: number
  readonly logger?: Logger
}

interface MemberStatus {
  readonly endpoint: string
  readonly revision: number
  readonly dbSize: number
  readonly inUse: number
}

const GIB = 1024 ** 3
const NOSPACE = 'Nospace' as const
const RETRY_FAILED_RECLAIM_MS = 30_000

/**
 * Keeps etcd writable. Every interval it reads each member's database size; past `reclaimAt` of
 * the quota, or when a write was refused with NOSPACE, it compacts the history, defragments each
 * member (the quota counts the database file, which only a defragmentation shrinks) and disarms
 * the NOSPACE alarm once the data fits again. What it cannot free (live data beyond the quota)
 * it reports: `/ready` and the 503's detail say so.
 */
export class EtcdSpace {
  readonly #members: { endpoint: string; client: Etcd3 }[]
  readonly #quota: number
  readonly #intervalMs: number
  readonly #reclaimAt: number
  readonly #keepHistoryMs: number
  readonly #logger: Logger | undefined
  /** (time, revision) samples, oldest first: where "the history of the last minutes" starts. */
  readonly #samples: { at: number; revision: number }[] = []
  #status: EtcdSpaceStatus | undefined
  #reclaiming: Promise<boolean> | undefined
  /** Until when reclaims are skipped after one that could not make room. */
  #retryAfter = 0
  /** When the last reclaim made room (epoch ms). */
  #reclaimedAt = 0
  #failing = false
  #timer: NodeJS.Timeout | undefined
  #closed = false

  constructor(endpoints: readonly string[], options: EtcdSpaceOptions = {}) {
    // One client per member: status and defragmentation address each member on its own.
    this.#members = endpoints.map((endpoint) => ({
      endpoint,
      client: new Etcd3({
        hosts: [endpoint],
        ...etcdClientAuth(options.auth),
        faultHandling: etcdFaultHandling({ attempts: 1 }),
        defaultCallOptions: () => ({ deadline: Date.now() + 10_000 }),
      }),
    }))
    this.#quota = options.quotaBytes ?? 2 * GIB
    this.#intervalMs = options.checkIntervalMs ?? 5000
    this.#reclaimAt = options.reclaimAt ?? 0.8
    this.#keepHistoryMs = options.keepHistoryMs ?? 5 * 60_000
    this.#logger = options.logger
  }

  get quotaBytes(): number {
    return this.#quota
  }

  /** The last check's figures (undefined before the first one answered). */
  status(): EtcdSpaceStatus | undefined {
    return this.#status
  }

  start(): void {
    const tick = (): void => {
      if (this.#closed) return
      this.#timer = setTimeout(() => void this.check().finally(tick), this.#intervalMs)
      this.#timer.unref()
    }
    void this.check().finally(tick)
  }

  /** Reads the members' sizes and alarms; reclaims space when it runs short. */
  async check(): Promise<void> {
    try {
      const { members, alarms } = await this.#read()
      this.#failing = false
      if (members.length === 0) return
      const largest = Math.max(...members.map((m) => m.dbSize))
      if (alarms.includes('NOSPACE') || largest >= this.#reclaimAt * this.#quota)
        await this.reclaim(alarms.includes('NOSPACE') ? 'nospace' : 'ahead')
    } catch (error) {
      // Once per outage: while etcd is away every check fails the same way.
      if (!this.#failing && !this.#closed) this.#logger?.warn('etcd space check failed', { error: String(error) })
      this.#failing = true
    }
  }

  /**
   * Compacts, defragments and disarms; one reclaim at a time (callers join the running one).
   * `nospace` (a write was refused) compacts all history, `ahead` keeps `keepHistoryMs` of it
   * unless that still leaves too little room. Resolves true when etcd takes writes again (at once
   * when a reclaim finished after `refusedAt`, the time a write was refused).
   */
  reclaim(why: 'nospace' | 'ahead' = 'nospace', refusedAt = Date.now()): Promise<boolean> {
    // A write refused before the last reclaim made room need only try again.
    if (refusedAt < this.#reclaimedAt) return Promise.resolve(true)
    // A reclaim that could not make room is not tried again at once: its defragmentations
    // would only stall etcd while the live data stays what it is.
    if (!this.#reclaiming && Date.now() < this.#retryAfter) return Promise.resolve(false)
    this.#reclaiming ??= this.#reclaimOnce(why)
      .catch((error: unknown) => {
        this.#logger?.warn('reclaiming etcd space failed', { error: String(error) })
        return false
      })
      .finally(() => {
        this.#reclaiming = undefined
      })
    return this.#reclaiming
  }

  async #reclaimOnce(why: 'nospace' | 'ahead'): Promise<boolean> {
    const before = await this.#read()
    const current = Math.max(...before.members.map((m) => m.revision))
    let target = why === 'nospace' ? current : this.#revisionAgo(this.#keepHistoryMs, current)
    await this.#compact(target)
    let after = await this.#read()
    if (why === 'ahead' && target < current && this.#tight(after.members, 'inUse')) {
      // The kept minutes alone fill the quota: history goes before writes do.
      target = current
      await this.#compact(target)
      after = await this.#read()
    }
    for (const member of this.#members) {
      const status = after.members.find((m) => m.endpoint === member.endpoint)
      // Only a file past the mark needs it. (Its in-use figure is no guide: etcd updates it only
      // after its next backend commit, so right after a compaction it still counts the history.)
      if (status && status.dbSize < this.#reclaimAt * this.#quota && !after.alarms.includes('NOSPACE')) continue
      // A member that is down now gets it on a later reclaim; the others go on.
      // A defragmentation of a big database takes a while.
      await member.client.maintenance.defragment({ deadline: Date.now() + 120_000 }).catch((error: unknown) => {
        this.#logger?.warn('defragmenting an etcd member failed', { endpoint: member.endpoint, error: String(error) })
      })
    }
    after = await this.#read()
    // Disarming while the file still fills the quota would only raise the alarm again.
    const fits = after.members.every((m) => m.dbSize < 0.95 * this.#quota)
    if (fits && after.alarms.includes('NOSPACE')) {
      const raised = await this.#anyMember((client) => client.maintenance.alarm({ action: 'Get', alarm: NOSPACE }))
      for (const alarm of raised.alarms)
        if (alarm.alarm === NOSPACE)
          await this.#anyMember((client) =>
            client.maintenance.alarm({ action: 'Deactivate', memberID: alarm.memberID, alarm: NOSPACE }),
          )
      after = await this.#read()
    }
    const largest = (members: readonly MemberStatus[], field: 'dbSize' | 'inUse') =>
      Math.max(...members.map((m) => m[field]))
    const fields = {
      why,
      compactedTo: target,
      dbSizeBefore: largest(before.members, 'dbSize'),
      dbSizeAfter: largest(after.members, 'dbSize'),
      inUse: largest(after.members, 'inUse'),
      quota: this.#quota,
    }
    this.#status = { ...this.#status!, lastReclaimAt: new Date().toISOString() }
    const roomy = why === 'nospace' ? fits && !after.alarms.includes('NOSPACE') : !this.#tight(after.members, 'dbSize')
    if (!roomy) {
      this.#retryAfter = Date.now() + RETRY_FAILED_RECLAIM_MS
      this.#logger?.error(
        'etcd is (nearly) out of space and compaction cannot free enough: its live data is near the quota; raise CONVEYOR_ETCD_QUOTA (etcd --quota-backend-bytes) or delete resources',
        fields,
      )
      return why === 'ahead' && fits
    }
    this.#reclaimedAt = Date.now()
    this.#logger?.info('reclaimed etcd space', fields)
    return true
  }

  /** True when a member's figure leaves less than a fifth of the quota free. */
  #tight(members: readonly MemberStatus[], field: 'dbSize' | 'inUse'): boolean {
    return members.some((m) => m[field] >= this.#reclaimAt * this.#quota)
  }

  async #compact(revision: number): Promise<void> {
    try {
      await this.#anyMember((client) => client.kv.compact({ revision, physical: true }))
    } catch (error) {
      // Another process (or etcd's periodic compaction) already went past it.
      if (!isCompactedError(error)) throw error
    }
  }

  /** Runs a cluster-wide call on the first member that answers (one may be down). */
  async #anyMember<T>(call: (client: Etcd3) => Promise<T>): Promise<T> {
    let failure: unknown
    for (const member of this.#members) {
      try {
        return await call(member.client)
      } catch (error) {
        if (isCompactedError(error)) throw error
        failure = error
      }
    }
    throw failure
  }

  /** The revision the store had `ms` ago (as sampled), or the oldest sampled one. */
  #revisionAgo(ms: number, current: number): number {
    const since = Date.now() - ms
    let revision = current
    for (const sample of this.#samples) {
      if (sample.at > since) break
      revision = sample.revision
    }
    return Math.min(revision, current)
  }

  async #read(): Promise<{ members: MemberStatus[]; alarms: string[] }> {
    const settled = await Promise.allSettled(
      this.#members.map(async ({ endpoint, client }) => {
        const status = await client.maintenance.status()
        return {
          endpoint,
          revision: Number(status.header.revision),
          dbSize: Number(status.dbSize),
          inUse: Number(status.dbSizeInUse || status.dbSize),
        }
      }),
    )
    const members = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []))
    if (members.length === 0) throw (settled[0] as PromiseRejectedResult).reason
    const raised = await this.#anyMember((client) => client.maintenance.alarm({ action: 'Get' }))
    const alarms = [...new Set(raised.alarms.map((alarm) => String(alarm.alarm).toUpperCase()))]
    const revision = Math.max(...members.map((m) => m.revision))
    const now = Date.now()
    if (this.#samples.at(-1)?.revision !== revision) this.#samples.push({ at: now, revision })
    while (this.#samples.length > 2 && this.#samples[1]!.at < now - this.#keepHistoryMs) this.#samples.shift()
    this.#status = {
      dbSizeBytes: Math.max(...members.map((m) => m.dbSize)),
      dbSizeInUseBytes: Math.max(...members.map((m) => m.inUse)),
      quotaBytes: this.#quota,
      alarms,
      ...(this.#status?.lastReclaimAt ? { lastReclaimAt: this.#status.lastReclaimAt } : {}),
    }
    return { members, alarms }
  }

  close(): Promise<void> {
    this.#closed = true
    clearTimeout(this.#timer)
    // A running defragmentation goes on in etcd; nothing here waits for it.
    for (const member of this.#members) member.client.close()
    return Promise.resolve()
  }
}
