import type { WorkRef } from '../../definitions/work.ts'
import type { Logger } from '../../runtime/logger.ts'
import type { Delivery } from './delivery.ts'
import type { WorkClient } from './work-client.ts'

export interface HeldClaim {
  /** Renews now (what `ctx.heartbeat()` does). */
  heartbeat(): void
  /** Stops renewing. */
  stop(): void
  /** Stops renewing and gives the claim up at once, so another instance need not wait for it to expire. */
  release(): Promise<void>
}

/**
 * Keeps a granted claim alive while the work runs: renews it (and tells JetStream the message is
 * being worked on) every third of the lease; when the actor answers that the claim is lost (taken
 * over after it expired, or the work was cancelled), `lost` aborts the work.
 */
export function holdClaim(options: {
  readonly client: WorkClient
  readonly type: string
  readonly name: string
  readonly work: WorkRef
  readonly token: string
  readonly leaseMs: number
  readonly delivery: Delivery
  readonly logger: Logger
  readonly lost: (reason: string) => void
}): HeldClaim {
  const { client, type, name, work, token, leaseMs, delivery } = options
  let stopped = false
  let renewing = false
  const renew = (): void => {
    delivery.working()
    if (stopped || renewing) return
    renewing = true
    void client
      .renew(type, name, work, token, leaseMs)
      .then((answer) => {
        if (!stopped && answer?.result === 'abort') options.lost(answer.reason)
      })
      .catch((error: unknown) =>
        options.logger.warn('renewing a claim failed; retrying at the next heartbeat', { error: String(error) }),
      )
      .finally(() => (renewing = false))
  }
  const timer = setInterval(renew, Math.max(200, Math.floor(leaseMs / 3)))
  const stop = (): void => {
    stopped = true
    clearInterval(timer)
  }
  return {
    heartbeat: renew,
    stop,
    release: async () => {
      stop()
      await client.renew(type, name, work, token, 0).catch(() => undefined)
    },
  }
}
