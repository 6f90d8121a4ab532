import http from 'node:http'
import net from 'node:net'
import WebSocket from 'ws'
import type { HttpCase, RawCase, WsCase } from './cases.ts'

/** What one case got: a label to count (a status, `ws-open`, `closed`, …) and what was wrong with it. */
export interface Outcome {
  readonly label: string
  readonly violations: readonly string[]
  /** Wrong, but not what the run asserts (a protocol slip, say): reported, not failed on. */
  readonly findings?: readonly string[]
  /** A short description of the answer, for the report of a violation. */
  readonly answer?: string
}

/** Longest a request may take before it counts as a hang (an event waits up to 10 s for its actor). */
const HANG_MS = 30_000
/** How long a stream (SSE, WebSocket) is read before the case closes it. */
const STREAM_READ_MS = 300
/** Raw requests uWS's parser does not take are neither answered nor closed until its idle timeout (~10 s): not waited for. */
const RAW_WAIT_MS = 4_000
/** The largest frame the gateway takes on `/ws`, and on a log socket. */
const WS_MAX_PAYLOAD = 16 * 1024
const LOG_SOCKET_MAX_PAYLOAD = 4 * 1024
/** The smallest body limit of a route (`POST /tokens`). */
const SMALLEST_BODY_LIMIT = 16 * 1024
/** Methods uWS's parser knows; it drops the connection on any other. */
const KNOWN_METHODS = new Set(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT'])

/** The refusal rules: no 5xx but 503, and every 4xx/5xx a problem+json `{type, title, status, detail}`. */
export function checkAnswer(status: number, contentType: string | undefined, body: string, head = false): string[] {
  const violations: string[] = []
  if (status >= 500 && status !== 503) violations.push(`status ${status}`)
  if (status < 400) return violations
  if (!contentType?.toLowerCase().startsWith('application/problem+json'))
    violations.push(`${status} with Content-Type ${contentType ?? '(none)'}`)
  if (head) return violations
  try {
    const problem = JSON.parse(body) as Record<string, unknown>
    for (const field of ['type', 'title', 'detail'])
      if (typeof problem[field] !== 'string') violations.push(`${status} problem without a string ${field}`)
    if (problem.status !== status) violations.push(`${status} problem whose status is ${String(problem.status)}`)
  } catch {
    violations.push(`${status} body is not JSON: ${body.slice(0, 200)}`)
  }
  return violations
}

/**
 * Sends an HTTP case with Node's client; an event stream is read briefly, then closed. A HEAD
 * goes over a socket of its own, its bytes read as they come: Node's client would take a body
 * after a HEAD's answer for the next answer, and blame the next request.
 */
export function sendHttp(agent: http.Agent, port: number, request: HttpCase): Promise<Outcome> {
  if (request.method === 'HEAD') return sendHead(port, request)
  return new Promise((resolve) => {
    let settled = false
    let hang: NodeJS.Timeout | undefined
    const done = (outcome: Outcome): void => {
      if (settled) return
      settled = true
      clearTimeout(hang)
      resolve(outcome)
    }
    let req: http.ClientRequest
    try {
      req = http.request({
        agent,
        host: '127.0.0.1',
        port,
        method: request.method,
        path: request.path,
        headers: {
          ...request.headers,
          ...(request.body ? { 'content-length': String(request.body.length) } : {}),
        },
        setHost: false,
      })
    } catch (error) {
      // Node refused to send it (a character it will not put in a request line or header).
      return done({ label: 'not-sent', violations: [], answer: String(error) })
    }
    hang = setTimeout(() => {
      req.destroy()
      done({ label: 'timeout', violations: [`no answer within ${HANG_MS} ms`] })
    }, HANG_MS)
    req.on('response', (res) => {
      const status = res.statusCode ?? 0
      const contentType = res.headers['content-type']
      if (contentType?.startsWith('text/event-stream')) {
        setTimeout(() => {
          res.destroy()
          done({ label: String(status), violations: checkAnswer(status, contentType, ''), answer: 'event stream' })
        }, STREAM_READ_MS)
        res.resume()
        return
      }
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', () => undefined)
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        const answer = `${status} ${contentType ?? ''} ${body.slice(0, 300)}`
        done({ label: String(status), violations: checkAnswer(status, contentType, body), answer })
      })
    })
    req.on('error', (error: NodeJS.ErrnoException) =>
      // The gateway (uWS's parser, for a method it does not know) closed the connection without an answer.
      done({
        label: 'reset',
        violations:
          // A body over a route's limit is answered 413 and the connection closed, maybe while Node still writes it.
          KNOWN_METHODS.has(request.method) && !((request.body?.length ?? 0) > SMALLEST_BODY_LIMIT)
            ? [`connection closed without an answer: ${error.message}`]
            : [],
        answer: `${error.code ?? ''} ${error.message}`,
      }),
    )
    req.end(request.body)
  })
}

/** Opens a WebSocket, sends the frames, reads for a moment; every frame back must be a JSON message, none `internal`. */
export function sendWs(port: number, request: WsCase): Promise<Outcome & { closeCode?: number }> {
  return new Promise((resolve) => {
    const violations: string[] = []
    const findings: string[] = []
    let settled = false
    let label = 'ws-error'
    let answer = ''
    let hang: NodeJS.Timeout | undefined
    const done = (closeCode?: number): void => {
      if (settled) return
      settled = true
      clearTimeout(hang)
      resolve({ label, violations, findings, answer, ...(closeCode !== undefined ? { closeCode } : {}) })
    }
    let socket: WebSocket
    try {
      socket = new WebSocket(`ws://127.0.0.1:${port}${request.path}`, [...request.protocols], {
        headers: request.headers,
        handshakeTimeout: HANG_MS,
        maxPayload: 64 * 1024 * 1024,
      })
    } catch (error) {
      label = 'not-sent'
      answer = String(error)
      return done()
    }
    hang = setTimeout(() => {
      violations.push(`no upgrade answer or close within ${HANG_MS} ms`)
      label = 'timeout'
      socket.terminate()
      done()
    }, HANG_MS)
    socket.on('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0
      label = String(status)
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        answer = `${status} ${body.slice(0, 300)}`
        violations.push(...checkAnswer(status, res.headers['content-type'], body))
        done()
      })
      res.on('error', () => done())
    })
    socket.on('open', () => {
      label = 'ws-open'
      for (const frame of request.frames) socket.send(frame, { binary: typeof frame !== 'string' })
      setTimeout(() => socket.close(1000), STREAM_READ_MS)
    })
    socket.on('message', (data, isBinary) => {
      const text = isBinary ? '' : data.toString()
      try {
        const message = JSON.parse(text) as Record<string, unknown>
        if (message.code === 'internal') violations.push(`internal error frame: ${text.slice(0, 300)}`)
      } catch {
        violations.push(`a frame that is not JSON: ${text.slice(0, 200)}`)
      }
    })
    socket.on('error', (error) => {
      answer ||= error.message
      // Offered only the bearer subprotocol, which is never echoed: ws (as browsers) gives up (docs/security.md).
      if (error.message === 'Server sent no subprotocol') label = 'ws-no-subprotocol'
    })
    socket.on('close', (code) => {
      // uWS drops a socket that sends a frame over its limit without a close frame (1006).
      const limit = request.path.startsWith('/ws') ? WS_MAX_PAYLOAD : LOG_SOCKET_MAX_PAYLOAD
      const oversized = request.frames.some((frame) => Buffer.byteLength(frame) > limit)
      if (code === 1006 && label === 'ws-open' && !oversized)
        findings.push('a WebSocket closed abnormally (1006) without an oversized frame')
      done(code)
    })
  })
}

interface RawAnswer {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string
}

/** The complete answers at the start of `data` (1xx skipped); a chunked or unfinished one ends the list. */
function parseAnswers(data: Buffer): RawAnswer[] {
  const answers: RawAnswer[] = []
  let offset = 0
  for (;;) {
    const end = data.indexOf('\r\n\r\n', offset)
    if (end < 0) return answers
    const [line, ...lines] = data.subarray(offset, end).toString('latin1').split('\r\n')
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(line ?? '')?.[1] ?? 0)
    const headers = Object.fromEntries(
      lines.map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
    )
    if (status >= 100 && status < 200) {
      offset = end + 4
      continue
    }
    const length = Number(headers['content-length'] ?? 0)
    if (headers['transfer-encoding'] || data.length < end + 4 + length) return answers
    answers.push({ status, headers, body: data.subarray(end + 4, end + 4 + length).toString('utf8') })
    offset = end + 4 + length
  }
}

/** What uWS's HTTP parser does with requests an HTTP library would not send, where it is wrong (RFC 9112). */
function rawFindings(variant: string, answers: readonly RawAnswer[], ended: string): string[] {
  const accepted = answers.some((a) => a.status < 400)
  if (variant === 'pipelined' && answers.length < 2)
    return [`a request pipelined after one with a body: ${answers.length} of 2 answered, then ${ended}`]
  if (variant === 'two-lengths' && accepted)
    return ['two differing Content-Length headers accepted (the first is used)']
  if (variant === 'cl-and-te' && accepted) return ['Content-Length with Transfer-Encoding accepted']
  if (variant === 'http10' && answers.length === 0) return [`an HTTP/1.0 request is not answered (${ended})`]
  return []
}

/** Writes raw bytes to the gateway; the answers it gives (or its closing the connection) are checked. */
export function sendRaw(port: number, request: RawCase): Promise<Outcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let settled = false
    const expected = request.variant === 'pipelined' ? 2 : 1
    const finish = (ended: 'closed' | 'abandoned' | 'unanswered' | 'answered'): void => {
      if (settled) return
      settled = true
      clearTimeout(hang)
      clearTimeout(abandon)
      socket.destroy()
      const answers = parseAnswers(Buffer.concat(chunks))
      const violations = answers.flatMap((a) => checkAnswer(a.status, a.headers['content-type'], a.body))
      resolve({
        label: answers.length > 0 ? answers.map((a) => String(a.status)).join('+') : ended,
        violations,
        findings: rawFindings(request.variant, answers, ended),
        answer: answers.map((a) => `${a.status} ${a.body.slice(0, 200)}`).join(' | ') || ended,
      })
    }
    const socket = net.connect(port, '127.0.0.1', () => socket.write(request.bytes))
    const hang = setTimeout(() => finish('unanswered'), RAW_WAIT_MS)
    const abandon =
      request.abandonAfterMs === undefined ? undefined : setTimeout(() => finish('abandoned'), request.abandonAfterMs)
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      if (request.abandonAfterMs === undefined && parseAnswers(Buffer.concat(chunks)).length >= expected)
        finish('answered')
    })
    socket.on('error', () => undefined)
    socket.on('close', () => finish('closed'))
  })
}

/** A HEAD over raw TCP: its answer is checked like any other, and a body after it is a finding (RFC 9110 §9.3.2). */
async function sendHead(port: number, request: HttpCase): Promise<Outcome> {
  const headers = { ...request.headers, ...(request.body ? { 'content-length': String(request.body.length) } : {}) }
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`)
  const bytes = Buffer.concat([
    Buffer.from(`HEAD ${request.path} HTTP/1.1\r\n${lines.join('')}connection: close\r\n\r\n`, 'latin1'),
    request.body ?? Buffer.alloc(0),
  ])
  const data = await new Promise<Buffer>((resolve) => {
    const chunks: Buffer[] = []
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes))
    const stop = setTimeout(() => socket.destroy(), RAW_WAIT_MS)
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', () => undefined)
    socket.on('close', () => {
      clearTimeout(stop)
      resolve(Buffer.concat(chunks))
    })
  })
  const end = data.indexOf('\r\n\r\n')
  if (end < 0) return { label: 'reset', violations: [], answer: data.toString('latin1').slice(0, 300) }
  const [line, ...rest] = data.subarray(0, end).toString('latin1').split('\r\n')
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(line ?? '')?.[1] ?? 0)
  const contentType = rest.find((l) => /^content-type:/i.test(l))?.replace(/^content-type:\s*/i, '')
  const extra = data.length - (end + 4)
  return {
    label: String(status),
    violations: checkAnswer(status, contentType, '', true),
    findings: extra > 0 ? ['HEAD answered with a body'] : [],
    answer: data.toString('latin1').slice(0, 500),
  }
}
