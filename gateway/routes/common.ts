import { ConveyorError, invalid } from '../../runtime/errors.ts'
import { nameProblem } from '../../definitions/names.ts'
import type { ApiReply, ApiRequest } from '../http.ts'

/** A path parameter that must be a valid object name. */
export function nameParam(request: ApiRequest, param: string): string {
  const value = request.params[param] ?? ''
  const problem = nameProblem(value)
  if (problem) throw invalid(`${param} ${JSON.stringify(value)} ${problem}`, [{ path: `:${param}`, message: problem }])
  return value
}

/** The revision a write is conditional on, and whether `If-Match` (rather than the body) said so. */
export interface WriteCondition {
  readonly revision: number | undefined
  readonly ifMatch: boolean
}

/** The revision a write is conditional on: `If-Match` wins over `metadata.revision` in the body. */
export function writeCondition(request: ApiRequest, body?: unknown): WriteCondition {
  const header = request.headers.get('if-match')
  if (header !== undefined && header !== '*') {
    const revision = Number(header.replace(/^W\//, '').replace(/"/g, '').trim())
    if (!Number.isSafeInteger(revision) || revision <= 0)
      throw invalid(`If-Match must be a revision number, got ${JSON.stringify(header)}`, [
        { path: 'If-Match', message: 'must be a positive integer revision' },
      ])
    return { revision, ifMatch: true }
  }
  const fromBody = (body as { metadata?: { revision?: unknown } } | undefined)?.metadata?.revision
  if (fromBody === undefined || fromBody === null) return { revision: undefined, ifMatch: false }
  if (typeof fromBody !== 'number' || !Number.isSafeInteger(fromBody) || fromBody <= 0) {
    throw invalid('metadata.revision must be a positive integer', [
      { path: '/metadata/revision', message: 'must be a positive integer' },
    ])
  }
  return { revision: fromBody, ifMatch: false }
}

/**
 * Runs a conditional write. A stale `metadata.revision` stays a 409 conflict; a stale `If-Match`
 * is a 412, as HTTP (and Kubernetes) clients expect of a failed precondition.
 */
export async function conditionally<T>(
  condition: WriteCondition,
  write: (revision?: number) => Promise<T>,
): Promise<T> {
  try {
    return await write(condition.revision)
  } catch (error) {
    if (condition.ifMatch && error instanceof ConveyorError && error.code === 'stale-revision')
      throw new ConveyorError('precondition-failed', `If-Match failed: ${error.message}`, {
        kind: 'preconditionFailed',
      })
    throw error
  }
}

/** An object's reply, with its revision as `ETag`. */
export function objectReply(status: number, object: { readonly metadata: { readonly revision: number } }): ApiReply {
  return { status, body: object, headers: { ETag: `"${object.metadata.revision}"` } }
}

/** Adds warnings to a reply: in the body (`warnings`) and as `Warning: 299` headers. */
export function withWarnings(reply: ApiReply, warnings: readonly string[]): ApiReply {
  if (warnings.length === 0) return reply
  return {
    ...reply,
    body: { ...(reply.body as object), warnings },
    headers: { ...reply.headers, Warning: warnings.map((w) => `299 conveyor ${JSON.stringify(w)}`).join(', ') },
  }
}

/** A PUT body with the object's name (and other path parts) filled in when the body leaves them out. */
export function withPathDefaults(body: unknown, defaults: Record<string, string>): unknown {
  return typeof body === 'object' && body !== null && !Array.isArray(body) ? { ...defaults, ...body } : body
}

export function positiveIntegerQuery(request: ApiRequest, name: string, max: number): number | undefined {
  const raw = request.query.get(name)
  if (raw === null || raw === '') return undefined
  const value = Number(raw)
  if (!Number.isSafeInteger(value) || value <= 0 || value > max)
    throw invalid(`${name} must be an integer between 1 and ${max}`, [
      { path: `?${name}`, message: `must be an integer between 1 and ${max}` },
    ])
  return value
}
