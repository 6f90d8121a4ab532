import { invalid } from '../../runtime/errors.ts'
import { nameProblem } from '../../definitions/names.ts'
import type { ApiRequest } from '../http.ts'

/** A path parameter that must be a valid object name. */
export function nameParam(request: ApiRequest, param: string): string {
  const value = request.params[param] ?? ''
  const problem = nameProblem(value)
  if (problem) throw invalid(`${param} ${JSON.stringify(value)} ${problem}`, [{ path: `:${param}`, message: problem }])
  return value
}

/** The revision a write is conditional on: `If-Match` wins over `metadata.revision` in the body. */
export function expectedRevision(request: ApiRequest, body?: unknown): number | undefined {
  const header = request.headers.get('if-match')
  if (header !== undefined && header !== '*') {
    const revision = Number(header.replace(/^W\//, '').replace(/"/g, '').trim())
    if (!Number.isSafeInteger(revision) || revision <= 0)
      throw invalid(`If-Match must be a revision number, got ${JSON.stringify(header)}`, [
        { path: 'If-Match', message: 'must be a positive integer revision' },
      ])
    return revision
  }
  const fromBody = (body as { metadata?: { revision?: unknown } } | undefined)?.metadata?.revision
  if (fromBody === undefined || fromBody === null) return undefined
  if (typeof fromBody !== 'number' || !Number.isSafeInteger(fromBody) || fromBody <= 0) {
    throw invalid('metadata.revision must be a positive integer', [
      { path: '/metadata/revision', message: 'must be a positive integer' },
    ])
  }
  return fromBody
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
