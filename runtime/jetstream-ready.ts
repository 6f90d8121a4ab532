import { NoRespondersError, TimeoutError } from '@nats-io/transport-node'
import { JetStreamApiError } from '@nats-io/jetstream'
import { backoffMs } from './backoff.ts'

/** JetStream API codes of a cluster that is forming or lost its quorum: asking again later can succeed. */
const NOT_READY_CODES: ReadonlySet<number> = new Set([
  10005, // no suitable peers for placement (the other nodes are not up yet)
  10008, // JetStream system temporarily unavailable (no meta leader)
  10009, // not the leader (an election is under way)
])

/** True when a JetStream management call failed because the system is not ready yet (rather than refused). */
export function jetStreamNotReady(error: unknown): boolean {
  if (error instanceof TimeoutError || error instanceof NoRespondersError) return true
  return error instanceof JetStreamApiError && (NOT_READY_CODES.has(error.code) || error.status === 503)
}

/**
 * Runs a JetStream management call (creating the streams, say) again with backoff while JetStream
 * is not ready: a cluster whose nodes start together has no meta leader for a few seconds. Other
 * errors end it at once; past `timeoutMs` the last error is thrown to `failed`.
 */
export async function whenJetStreamReady<T>(
  work: () => Promise<T>,
  timeoutMs: number,
  failed: (last: unknown, waitedMs: number) => Error,
): Promise<T> {
  const started = Date.now()
  for (let attempt = 1; ; attempt++) {
    try {
      return await work()
    } catch (error) {
      const waited = Date.now() - started
      if (!jetStreamNotReady(error)) throw error
      if (waited >= timeoutMs) throw failed(error, waited)
      const delay = Math.min(backoffMs(attempt, { baseMs: 250, maxMs: 3000 }), timeoutMs - waited)
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
  }
}
