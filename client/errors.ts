import type { FieldError } from '../definitions/errors.ts'

/** The problem+json body the gateway answers a refused request with. */
export interface ProblemBody {
  readonly type: string
  readonly title: string
  readonly status: number
  readonly detail: string
  readonly errors?: readonly FieldError[]
  readonly [extra: string]: unknown
}

/**
 * A request the gateway refused (4xx or 5xx): its status, the problem's `code` (the last part of
 * its `type`, e.g. `stale-revision`), the detail and every failing field.
 */
export class ApiError extends Error {
  readonly status: number
  readonly code: string
  readonly detail: string
  readonly errors: readonly FieldError[]
  readonly problem: ProblemBody | undefined
  /** Seconds to wait before retrying, from `Retry-After` (429 and 503). */
  readonly retryAfterSeconds: number | undefined

  constructor(method: string, path: string, status: number, problem: ProblemBody | undefined, retryAfter?: string) {
    const detail = problem?.detail ?? problem?.title ?? `status ${status}`
    const fields = problem?.errors?.length ? ` (${problem.errors.map((e) => `${e.path} ${e.message}`).join('; ')})` : ''
    super(`${method} ${path}: ${status} ${detail}${fields}`)
    this.name = 'ApiError'
    this.status = status
    this.code = problem?.type?.split(/[:/]/).at(-1) ?? `http-${status}`
    this.detail = detail
    this.errors = problem?.errors ?? []
    this.problem = problem
    const seconds = retryAfter === undefined ? Number.NaN : Number(retryAfter)
    this.retryAfterSeconds = Number.isFinite(seconds) ? seconds : undefined
  }
}

/** The gateway could not be reached at all (connection refused, DNS, TLS, a timeout). */
export class UnreachableError extends Error {
  readonly url: string

  constructor(url: string, cause: unknown) {
    const reason =
      cause instanceof Error ? ((cause.cause as Error | undefined)?.message ?? cause.message) : String(cause)
    super(`cannot reach the Conveyor API at ${url}: ${reason}`, { cause })
    this.name = 'UnreachableError'
    this.url = url
  }
}
