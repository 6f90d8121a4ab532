import { backoffMs } from './backoff.ts'

export interface RetryOptions {
  /** Tries in all. @default 5 */
  readonly attempts?: number
  /** The error once every try lost a race. */
  readonly exhausted: () => Error
  /** @default 20 */
  readonly baseDelayMs?: number
}

/**
 * Optimistic concurrency: runs `attempt` (0, 1, 2, …) until it returns a value; `undefined` means
 * "a compare failed: read again and retry", after a short jittered backoff. Gives up with
 * `exhausted()` after `attempts` tries; errors thrown by `attempt` end it at once.
 */
export async function retryOnConflict<T>(
  attempt: (n: number) => Promise<T | undefined>,
  options: RetryOptions,
): Promise<T> {
  const attempts = options.attempts ?? 5
  for (let n = 0; n < attempts; n++) {
    const result = await attempt(n)
    if (result !== undefined) return result
    if (n + 1 < attempts)
      await new Promise((resolve) =>
        setTimeout(resolve, backoffMs(n + 1, { baseMs: options.baseDelayMs ?? 20, maxMs: 1000 })),
      )
  }
  throw options.exhausted()
}
