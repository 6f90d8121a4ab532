import type { Etcd3, Watcher } from 'etcd3'
import { keys } from '../keys.ts'
import { backoffMs } from '../backoff.ts'
import type { Logger } from '../logger.ts'
import { DriverIdentities, natsUserOf } from '../driver-identities.ts'
import type { NatsUser, RunningNats } from './nats-server.ts'

export interface NatsUserSyncOptions {
  readonly etcd: Etcd3
  /** The servers to keep in step (every node of a cluster). */
  readonly servers: readonly RunningNats[]
  /** Users the servers always take (the control plane's). */
  readonly fixedUsers: readonly NatsUser[]
  readonly logger: Logger
}

export interface NatsUserSync {
  /** Resolves once the users of etcd revision `revision` or later are loaded. */
  applied(revision: number): Promise<void>
  close(): Promise<void>
}

/**
 * Keeps the users of NATS servers this process supervises in step with the driver identities in
 * etcd: every change (an identity issued, a token revoked, an expiry reached) rewrites the
 * servers' users and has them reload, then records the revision loaded under
 * `/conveyor/nats-users-applied`, which a gateway issuing an identity waits for.
 */
export async function syncNatsUsers(options: NatsUserSyncOptions): Promise<NatsUserSync> {
  const identities = new DriverIdentities(options.etcd)
  let loaded = 0
  let closed = false
  let dirty = true
  let running: Promise<void> | undefined
  let expiry: NodeJS.Timeout | undefined
  let retry: NodeJS.Timeout | undefined
  const waiters = new Set<{ revision: number; resolve: () => void }>()
  let wake: (() => void) | undefined
  // The servers start with the fixed users: reload only when that changes (a reload costs a cluster a blip).
  let current = JSON.stringify(options.fixedUsers)

  const render = async (): Promise<void> => {
    const { records, revision } = await identities.list()
    const now = Date.now()
    const live = records.filter((record) => !record.expiresAt || Date.parse(record.expiresAt) > now)
    const users = [...options.fixedUsers, ...live.map(natsUserOf)]
    const rendered = JSON.stringify(users)
    if (rendered !== current) {
      await Promise.all(options.servers.map((server) => server.setUsers(users)))
      current = rendered
    }
    await options.etcd.put(keys.natsUsersApplied()).value(String(revision)).exec()
    loaded = revision
    for (const waiter of waiters)
      if (waiter.revision <= loaded) {
        waiters.delete(waiter)
        waiter.resolve()
      }
    // The next expiry removes that user: render again then.
    const next = Math.min(
      ...live.filter((record) => record.expiresAt).map((record) => Date.parse(record.expiresAt!) - now + 10),
    )
    clearTimeout(expiry)
    if (Number.isFinite(next)) expiry = setTimeout(schedule, Math.min(next, 2 ** 31 - 1))
  }

  function schedule(): void {
    dirty = true
    if (running || closed) return
    running = (async () => {
      for (let attempt = 1; dirty && !closed; attempt++) {
        dirty = false
        try {
          await render()
          attempt = 0
        } catch (error) {
          options.logger.warn('loading driver identities into NATS failed; retrying', { error: String(error) })
          dirty = true
          await new Promise<void>((resolve) => {
            wake = resolve
            retry = setTimeout(resolve, backoffMs(attempt, { baseMs: 500, maxMs: 10_000 }))
          })
        }
      }
    })().finally(() => {
      running = undefined
      if (dirty && !closed) schedule()
    })
  }

  const watcher: Watcher = await options.etcd.watch().prefix(keys.natsUsers()).create()
  watcher.on('data', () => schedule())
  // A watch that reconnects may have missed changes: read everything again.
  watcher.on('connected', () => schedule())
  watcher.on('error', () => schedule())
  schedule()

  return {
    applied: (revision) =>
      revision <= loaded
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            waiters.add({ revision, resolve })
          }),
    close: async () => {
      closed = true
      clearTimeout(expiry)
      clearTimeout(retry)
      wake?.()
      await watcher.cancel().catch(() => {})
      await running?.catch(() => {})
    },
  }
}
