import { GRPCResourceExhastedError, isRecoverableError, type IOptions } from 'etcd3'

type FaultHandling = NonNullable<IOptions['faultHandling']>
type Policy = NonNullable<FaultHandling['global']>
type Context = Parameters<Parameters<Policy['execute']>[0]>[0]

/**
 * etcd answered NOSPACE: its database reached `--quota-backend-bytes`. Ambiguous for a write, like
 * a deadline: a write refused at the door was not applied, but the one that crossed the quota was
 * applied and still answered NOSPACE.
 */
export const isEtcdNoSpace = (error: unknown): boolean =>
  error instanceof GRPCResourceExhastedError && /database space exceeded/.test(error.message)

/** A response was larger than the client accepts: the request asked for too much at once. */
export const isResponseTooLarge = (error: unknown): boolean =>
  error instanceof GRPCResourceExhastedError && !isEtcdNoSpace(error)

/**
 * The server, or the way to it, failed: unreachable, timed out, restarting. etcd3 also counts
 * RESOURCE_EXHAUSTED as recoverable, but that is an answer about one request (too large a
 * response, no space for a write), so it must neither be retried as such nor open the breaker.
 */
export const isHostFault = (error: unknown): boolean =>
  error instanceof Error && isRecoverableError(error) && !(error instanceof GRPCResourceExhastedError)

/** What a call gets while the breaker of its host is open. `isBrokenCircuitError` is how etcd3 and callers tell it. */
export class EtcdCircuitOpenError extends Error {
  readonly isBrokenCircuitError = true
  constructor(host: string) {
    super(`etcd at ${host} failed repeatedly; calls are refused for a moment`)
    this.name = 'EtcdCircuitOpenError'
  }
}

const noEvent = () => ({ dispose: () => {} })

/** etcd3's policy shape (cockatiel's `IPolicy`) around one `execute`. */
function policy(execute: <T>(fn: () => PromiseLike<T> | T) => Promise<T>, signal?: AbortSignal): Policy {
  const context = { signal: signal ?? new AbortController().signal } as Context
  return {
    execute: <T>(fn: (context: Context) => PromiseLike<T> | T) => execute(() => fn(context)),
    onSuccess: noEvent,
    onFailure: noEvent,
  } as unknown as Policy
}

export interface EtcdFaultOptions {
  /** Consecutive host faults that open a host's breaker. @default 3 */
  readonly breakAfter?: number
  /** How long an open breaker refuses calls before one is let through to probe. @default 5000 */
  readonly halfOpenAfterMs?: number
  /** Attempts of one call when the host fails. @default 3 */
  readonly attempts?: number
  /**
   * Called when etcd answered NOSPACE; the error reaches the caller once this settles (space
   * reclaimed: compact, defragment, disarm), so the caller's own retry finds room. The call is
   * not retried here: etcd also answers NOSPACE for the write that crossed the quota after
   * applying it, so only the caller can tell whether its write is in (see `isEtcdNoSpace`).
   */
  readonly onNoSpace?: (refusedAt: number) => Promise<boolean>
}

/**
 * Per-host breaker: after `breakAfter` host faults in a row, calls to that host are refused for
 * `halfOpenAfterMs`, then one call probes it. Only host faults count; any answer closes it.
 */
function hostBreaker(host: string, breakAfter: number, halfOpenAfterMs: number): Policy {
  let failures = 0
  let openUntil = 0
  let probing = false
  return policy(async (fn) => {
    const halfOpen = openUntil !== 0
    if (halfOpen && (Date.now() < openUntil || probing)) throw new EtcdCircuitOpenError(host)
    if (halfOpen) probing = true
    try {
      const result = await fn()
      failures = 0
      openUntil = 0
      return result
    } catch (error) {
      if (isHostFault(error)) {
        failures++
        if (halfOpen || failures >= breakAfter) openUntil = Date.now() + halfOpenAfterMs
      } else {
        failures = 0
        openUntil = 0
      }
      throw error
    } finally {
      if (halfOpen) probing = false
    }
  })
}

/**
 * etcd3's `faultHandling`: host faults are retried and open the host's breaker; an oversized
 * response is the caller's to handle (page smaller) and a NOSPACE answer waits for space to be
 * reclaimed before it reaches the caller; neither counts against the host.
 */
export function etcdFaultHandling(options: EtcdFaultOptions = {}): FaultHandling {
  const attempts = options.attempts ?? 3
  const global = policy(async (fn) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn()
      } catch (error) {
        if (isHostFault(error) && attempt < attempts) continue
        if (isEtcdNoSpace(error) && options.onNoSpace) await options.onNoSpace(Date.now()).catch(() => false)
        throw error
      }
    }
  })
  return {
    host: (host) => hostBreaker(host, options.breakAfter ?? 3, options.halfOpenAfterMs ?? 5000),
    global,
  }
}
