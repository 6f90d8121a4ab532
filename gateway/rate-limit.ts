import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible'
import { ConveyorError } from '../runtime/errors.ts'

/** Requests per second one client may make, and failed token checks per minute one address may make. */
export interface RateLimits {
  /** Per token (or per address when auth is off); 0 turns the limit off. */
  readonly requestsPerSecond: number
  /** Per address: requests with a token that does not verify. */
  readonly failedAuthPerMinute: number
}

/** A 429 that says when to come back (`Retry-After`, in whole seconds). */
export class RateLimited extends ConveyorError {
  readonly retryAfterSeconds: number

  constructor(message: string, retryAfterMs: number) {
    super('rate-limited', message, { kind: 'tooManyRequests' })
    this.retryAfterSeconds = Math.max(1, Math.ceil(retryAfterMs / 1000))
  }
}

/**
 * Keeps one client from starving the rest: a budget of requests per second for each token, and
 * of failed token checks per address (so guessing tokens is slow and never floods etcd).
 */
export class RequestRates {
  readonly #requests: RateLimiterMemory | undefined
  readonly #failures: RateLimiterMemory
  readonly #limits: RateLimits

  constructor(limits: RateLimits) {
    this.#limits = limits
    this.#requests =
      limits.requestsPerSecond > 0
        ? new RateLimiterMemory({ points: limits.requestsPerSecond, duration: 1 })
        : undefined
    this.#failures = new RateLimiterMemory({ points: limits.failedAuthPerMinute, duration: 60 })
  }

  /** Counts a request of `client`; throws {@link RateLimited} past its budget. */
  async request(client: string): Promise<void> {
    if (!this.#requests) return
    try {
      await this.#requests.consume(client)
    } catch (refused) {
      throw new RateLimited(
        `more than ${this.#limits.requestsPerSecond} requests per second from one token (CONVEYOR_RATE_LIMIT); slow down`,
        (refused as RateLimiterRes).msBeforeNext ?? 1000,
      )
    }
  }

  /** Throws {@link RateLimited} while `address` is past its budget of failed token checks. */
  async checkFailures(address: string): Promise<void> {
    const used = await this.#failures.get(address)
    if (used && used.consumedPoints >= this.#limits.failedAuthPerMinute)
      throw new RateLimited(
        `more than ${this.#limits.failedAuthPerMinute} requests with an invalid token from this address in a minute; wait`,
        used.msBeforeNext,
      )
  }

  /** Counts a failed token check of `address`. */
  async failed(address: string): Promise<void> {
    await this.#failures.penalty(address, 1)
  }
}
