import type { HttpRequest, HttpResponse } from 'uWebSockets.js'
import { ConveyorError, invalid, type FieldError } from '../runtime/errors.ts'
import { isServerUnavailable } from '../runtime/connections.ts'
import { isEtcdNoSpace } from '../runtime/etcd-faults.ts'
import type { Logger } from '../runtime/logger.ts'
import type { Principal } from './auth.ts'
import { RateLimited } from './rate-limit.ts'

/** A request with everything copied out of uWS's stack-allocated objects, safe across awaits. */
export interface ApiRequest {
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: ReadonlyMap<string, string>
  readonly body: Buffer
  readonly params: Readonly<Record<string, string>>
  /** Who calls (undefined on a public route called without a token). */
  readonly principal?: Principal
}

export interface ApiReply {
  readonly status: number
  readonly body?: unknown
  readonly headers?: Readonly<Record<string, string>>
}

export type Handler = (request: ApiRequest) => Promise<ApiReply> | ApiReply

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  410: 'Gone',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
}

export const statusLine = (status: number): string => `${status} ${STATUS_TEXT[status] ?? 'Unknown'}`

export interface Problem {
  readonly type: string
  readonly title: string
  readonly status: number
  readonly detail: string
  readonly errors?: readonly FieldError[]
}

export function problem(status: number, code: string, detail: string, errors?: readonly FieldError[]): ApiReply {
  const body: Problem = {
    type: `urn:conveyor:problem:${code}`,
    title: STATUS_TEXT[status] ?? 'Error',
    status,
    detail,
    ...(errors ? { errors } : {}),
  }
  // Unavailable (and rate-limited) answers say when to come back, as RFC 9110 suggests.
  const headers: Record<string, string> = { 'Content-Type': 'application/problem+json' }
  if (status === 503 || status === 429) headers['Retry-After'] = String(RETRY_AFTER_SECONDS)
  return { status, body, headers }
}

/** What a 503 or 429 tells a client to wait before trying again. */
export const RETRY_AFTER_SECONDS = 2

/** Maps anything thrown by a handler to a problem reply; only a bug of ours is a 500. */
export function replyForError(error: unknown, logger: Logger): ApiReply {
  if (error instanceof ConveyorError && error.kind !== undefined) {
    const reply = problem(error.status, error.code, error.message, error.errors)
    if (error instanceof RateLimited)
      return { ...reply, headers: { ...reply.headers, 'Retry-After': String(error.retryAfterSeconds) } }
    // RFC 6750: a 401 names the scheme it wants.
    if (error.status === 401)
      return { ...reply, headers: { ...reply.headers, 'WWW-Authenticate': 'Bearer realm="conveyor"' } }
    return reply
  }
  if (isEtcdNoSpace(error))
    return problem(
      503,
      'etcd-no-space',
      'etcd is out of space (NOSPACE alarm: its database reached --quota-backend-bytes) and refuses writes; Conveyor compacts, defragments and disarms it when history is what fills it, so retry shortly; if this persists the live data exceeds the quota: raise CONVEYOR_ETCD_QUOTA or delete resources (README, "etcd space")',
    )
  if (isServerUnavailable(error) || (error instanceof ConveyorError && error.code.endsWith('unreachable'))) {
    return problem(503, 'unavailable', 'a backing server (etcd or NATS) is unavailable; retry shortly')
  }
  logger.error('unexpected error while handling a request', {
    error: error instanceof Error ? (error.stack ?? error.message) : String(error),
  })
  return problem(500, 'internal', 'internal error; the gateway log has the details')
}

/** Deepest nesting a request body may have: deeper input is refused before anything recurses over it. */
export const MAX_JSON_DEPTH = 64

function depthOf(value: unknown): number {
  let deepest = 0
  const stack: [unknown, number][] = [[value, 1]]
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!
    if (typeof current !== 'object' || current === null) continue
    if (depth > deepest) deepest = depth
    if (deepest > MAX_JSON_DEPTH) return deepest
    for (const child of Object.values(current)) stack.push([child, depth + 1])
  }
  return deepest
}

/**
 * A request body's JSON object with only the `fields` named (`what`: "a token request"), or a 400
 * naming each unknown field; `shape` describes the object in the message.
 */
export function requestObject(
  value: unknown,
  fields: ReadonlySet<string>,
  what: string,
  shape: string,
): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid(`${what} is a JSON object ${shape}`, [{ path: '/', message: 'must be an object' }])
  const object = value as Record<string, unknown>
  const unknown = Object.keys(object).filter((key) => !fields.has(key))
  if (unknown.length > 0)
    throw invalid(
      `unknown field(s) ${unknown.join(', ')}`,
      unknown.map((key) => ({ path: `/${key}`, message: `is not a field of ${what}` })),
    )
  return object
}

/** Parses a JSON body; malformed or too deeply nested JSON is a 400 that says why. */
export function parseJson(body: Buffer): unknown {
  if (body.length === 0)
    throw new ConveyorError('invalid-json', 'request body is empty; send a JSON object', {
      kind: 'invalid',
      errors: [{ path: '/', message: 'must be a JSON object' }],
    })
  let value: unknown
  try {
    value = JSON.parse(body.toString('utf8'))
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    throw new ConveyorError('invalid-json', `malformed JSON: ${message}`, {
      kind: 'invalid',
      errors: [{ path: '/', message: `malformed JSON: ${message}` }],
    })
  }
  if (depthOf(value) > MAX_JSON_DEPTH)
    throw new ConveyorError('invalid-json', `JSON nested deeper than ${MAX_JSON_DEPTH} levels`, {
      kind: 'invalid',
      errors: [{ path: '/', message: `is nested deeper than ${MAX_JSON_DEPTH} levels` }],
    })
  return value
}

/** Copies method, URL, query and headers out of a uWS request; must run before any await. */
export function readRequestHead(req: HttpRequest): {
  method: string
  path: string
  query: URLSearchParams
  headers: Map<string, string>
} {
  const headers = new Map<string, string>()
  req.forEach((name, value) => headers.set(name.toLowerCase(), value))
  return {
    method: req.getCaseSensitiveMethod().toUpperCase(),
    path: req.getUrl(),
    query: new URLSearchParams(req.getQuery() ?? ''),
    headers,
  }
}

/** A WebSocket upgrade as a request without a body (headers, query, route parameters), read before any await. */
export function readUpgradeRequest(req: HttpRequest, params: Record<string, string> = {}): ApiRequest {
  return { ...readRequestHead(req), body: Buffer.alloc(0), params }
}

/** Reads the whole body up to `limit` bytes; resolves undefined when the body is too large. */
export function readBody(res: HttpResponse, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    let done = false
    res.onData((chunk, isLast) => {
      if (done) return
      size += chunk.byteLength
      if (size > limit) {
        done = true
        resolve(undefined)
        return
      }
      chunks.push(Buffer.copyBytesFrom(new Uint8Array(chunk)))
      if (isLast) {
        done = true
        resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks))
      }
    })
  })
}

/** Writes a reply unless the client went away; to a `HEAD` (`state.head`) only its head, with the length the body would have. */
export function send(
  res: HttpResponse,
  state: { aborted: boolean; head?: boolean },
  reply: ApiReply,
  closeConnection = false,
): void {
  if (state.aborted) return
  state.aborted = true
  // A string or a Buffer is sent as it is (its Content-Type set by the route); anything else as JSON.
  const payload =
    reply.body === undefined
      ? ''
      : typeof reply.body === 'string' || Buffer.isBuffer(reply.body)
        ? reply.body
        : JSON.stringify(reply.body)
  res.cork(() => {
    res.writeStatus(statusLine(reply.status))
    let hasType = false
    for (const [name, value] of Object.entries(reply.headers ?? {})) {
      if (name.toLowerCase() === 'content-type') hasType = true
      res.writeHeader(name, value)
    }
    if (!hasType && payload) res.writeHeader('Content-Type', 'application/json')
    // This uWS build closes the connection after a head-only answer: say so, so a client opens a new one.
    if (state.head) res.endWithoutBody(typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length, true)
    else res.end(payload, closeConnection)
  })
}
