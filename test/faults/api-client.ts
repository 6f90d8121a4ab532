/** What one request to the gateway came to. */
export type Outcome =
  | { readonly kind: 'answer'; readonly status: number; readonly body: any; readonly headers: Headers }
  /** No answer within the abort limit. */
  | { readonly kind: 'timeout' }
  /** The gateway was not there (killed, restarting): the client moves to another. */
  | { readonly kind: 'refused'; readonly message: string }

/** A breach of the API's promises during an outage: a 5xx other than 503, a 503 without Retry-After, or a hang. */
export interface ApiViolation {
  readonly what: '5xx' | '503 without Retry-After' | 'slow' | 'hang'
  readonly op: string
  readonly path: string
  readonly phase: string
  readonly at: string
  readonly ms: number
  readonly status?: number
  readonly detail?: string
}

export interface ApiLimits {
  /** An answer slower than this is recorded as slow (the API's own deadlines are 5 s for etcd, 10 s for an event's reply). */
  readonly slowMs: number
  /** A request still unanswered after this is abandoned and recorded as a hang. */
  readonly abortMs: number
}

/**
 * The load's HTTP client: spreads requests over every gateway, moves to another when one is
 * gone, and counts what the API answered (by operation and status) and every broken promise.
 */
export class FaultApi {
  readonly #urls: () => readonly string[]
  readonly #limits: ApiLimits
  readonly #phase: () => string
  #next = 0
  /** Requests by `op status`, e.g. `event 200`, `create 503`, `create refused`. */
  readonly counts = new Map<string, number>()
  readonly violations: ApiViolation[] = []
  requests = 0
  maxMs = 0

  constructor(urls: () => readonly string[], limits: ApiLimits, phase: () => string) {
    this.#urls = urls
    this.#limits = limits
    this.#phase = phase
  }

  /** One request to the next gateway in turn. */
  async call(op: string, method: string, path: string, body?: unknown): Promise<Outcome> {
    const urls = this.#urls()
    const base = urls[this.#next++ % urls.length]!
    const started = Date.now()
    this.requests++
    let outcome: Outcome
    try {
      const response = await fetch(base + path, {
        method,
        headers: { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.#limits.abortMs),
      })
      const text = await response.text()
      let parsed: unknown
      try {
        parsed = text ? JSON.parse(text) : undefined
      } catch {
        parsed = text
      }
      outcome = { kind: 'answer', status: response.status, body: parsed, headers: response.headers }
    } catch (error) {
      const name = (error as Error).name
      outcome =
        name === 'TimeoutError' || name === 'AbortError'
          ? { kind: 'timeout' }
          : { kind: 'refused', message: String((error as Error & { cause?: Error }).cause?.message ?? error) }
    }
    const ms = Date.now() - started
    this.maxMs = Math.max(this.maxMs, ms)
    const key = `${op} ${outcome.kind === 'answer' ? outcome.status : outcome.kind}`
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1)
    const seen = { op, path, phase: this.#phase(), at: new Date(started).toISOString(), ms }
    if (outcome.kind === 'timeout') this.violations.push({ ...seen, what: 'hang' })
    else if (outcome.kind === 'answer') {
      const detail = typeof outcome.body === 'object' ? outcome.body?.detail : String(outcome.body).slice(0, 200)
      if (outcome.status >= 500 && outcome.status !== 503)
        this.violations.push({ ...seen, what: '5xx', status: outcome.status, detail })
      else if (outcome.status === 503 && !outcome.headers.get('retry-after'))
        this.violations.push({ ...seen, what: '503 without Retry-After', status: 503, detail })
      else if (ms > this.#limits.slowMs) this.violations.push({ ...seen, what: 'slow', status: outcome.status, detail })
    }
    return outcome
  }
}
