/** Throw from `reconcile` to retry the run later (with backoff), up to the delivery limit. */
export class RetryableError extends Error {
  readonly code = 'retryable'
  /** Milliseconds to wait before the next attempt; the driver's backoff decides when omitted. */
  readonly retryAfterMs: number | undefined

  constructor(message: string, options: { retryAfterMs?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'RetryableError'
    this.retryAfterMs = options.retryAfterMs
  }
}

/** Throw from `reconcile` to fail the run at once, without retry. */
export class TerminalError extends Error {
  readonly code = 'terminal'

  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'TerminalError'
  }
}
