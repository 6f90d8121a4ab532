import type { HttpResponse, TemplatedApp, WebSocket } from 'uWebSockets.js'
import type { LogEnd, LogLine } from '../definitions/objects.ts'
import type { ConveyorError } from '../runtime/errors.ts'
import type { LogFilter, LogStore } from './log-store.ts'
import { problem, readUpgradeRequest, replyForError, send, statusLine, type ApiRequest } from './http.ts'
import { remoteAddress, type StreamsPerClient } from './stream-caps.ts'
import type { BrowserGuard } from './browser-guard.ts'
import { chooseSubprotocol, clientKey, type Principal } from './auth.ts'
import { createLogger, type Logger } from '../runtime/logger.ts'

const HEARTBEAT_MS = 15_000
/** How often an SSE stream that could not write checks whether uWS sent what it held. */
const PROBE_MS = 200
/** The shortest idle timeout uWS takes. */
const MIN_WS_IDLE_SECONDS = 9
/** A client that has this many bytes unsent is closed (it can resume with `?after=` or `Last-Event-ID`). */
const MAX_BUFFERED = 8 * 1024 * 1024
/** Lines go out while less than this waits unsent; past it the subscription reads pages once the socket drained. */
const ROOM_BYTES = 512 * 1024

/** Caps of the log streams, shared with `/ws`. */
export interface LogStreamCaps {
  /** Counts open streams per client address; past its cap a new one is a 429. */
  readonly streams?: StreamsPerClient
  /** A client that reads nothing for this long is closed (it resumes after its last line). @default 120 */
  readonly idleTimeoutSeconds?: number
  /** Refuses streams for foreign origins and rebound host names. */
  readonly guard?: BrowserGuard
  /** Checks the stream's token (401/403); the principal's token is what the per-client cap counts. */
  readonly admit?: (request: ApiRequest) => Promise<Principal | undefined>
  /** Logs what a refusal that is not the caller's fault was. */
  readonly logger?: Logger
}

interface SocketData {
  readonly filter: LogFilter
  readonly after: number
  readonly address: string
  unsubscribe?: () => void
  closed?: boolean
  wake?: () => void
}

export const endMessage = (end: LogEnd): string => JSON.stringify({ event: 'end', ...end })

const refusal = (error: ConveyorError) => problem(error.status, error.code, error.message, error.errors)

/**
 * Serves a log subscription as Server-Sent Events: `id:` is the line's sequence, `event: end`
 * closes the run. An unknown run is a 404 (problem+json) before any event.
 */
export function streamSse(
  res: HttpResponse,
  logs: LogStore,
  filter: LogFilter,
  after: number,
  caps: LogStreamCaps = {},
  /** Whom the per-client cap counts the stream against (its token); default: its address. */
  client?: string,
): void {
  const state = { aborted: false }
  const address = client ?? remoteAddress(res)
  if (caps.streams && !caps.streams.open(address, res)) return
  const idleMs = (caps.idleTimeoutSeconds ?? 120) * 1000
  /** When uWS last had nothing left to send: a client that read nothing since `idleMs` is cut off. */
  let blockedSince = 0
  let open = false
  let heartbeat: NodeJS.Timeout | undefined
  let blocked = false
  let waiters: (() => void)[] = []
  const wake = (): void => {
    const woken = waiters
    waiters = []
    for (const resolve of woken) resolve()
  }
  let stopped = false
  const stop = (): void => {
    if (stopped) return
    stopped = true
    state.aborted = true
    caps.streams?.closed(address)
    clearInterval(heartbeat)
    clearTimeout(probe)
    unsubscribe()
    wake()
  }
  res.onAborted(stop)
  /** Bytes written since uWS last had nothing left to send. */
  let buffered = 0
  const write = (text: string): void => {
    if (state.aborted) return
    let ok = true
    res.cork(() => {
      ok = res.write(text)
    })
    if (ok) {
      if (blocked) unblock()
      return
    }
    if (!blocked) blockedSince = Date.now()
    blocked = true
    probeSoon(PROBE_MS)
    buffered += text.length
    // A client this far behind is cut off; it resumes with Last-Event-ID.
    if (buffered > MAX_BUFFERED) finish()
  }
  const finish = (): void => {
    if (state.aborted) return
    stop()
    res.cork(() => res.end())
  }
  const unblock = (): void => {
    clearTimeout(probe)
    probe = undefined
    blocked = false
    buffered = 0
    wake()
  }
  // Whether uWS still holds unsent bytes shows only in what a write returns: while blocked, a
  // comment is written after each writable event (uWS flushes around it) and every PROBE_MS, so
  // the subscription goes on as soon as all went out.
  let probe: NodeJS.Timeout | undefined
  const probeSoon = (delayMs: number): void => {
    if (probe || state.aborted) return
    probe = setTimeout(() => {
      probe = undefined
      if (state.aborted || !blocked) return
      write(':\n\n')
    }, delayMs)
  }
  res.onWritable(() => {
    clearTimeout(probe)
    probe = undefined
    probeSoon(0)
    return true
  })
  const unsubscribe = logs.subscribe(filter, {
    after,
    open: () => {
      if (state.aborted) return
      open = true
      res.cork(() => {
        res.writeStatus(statusLine(200))
        res.writeHeader('Content-Type', 'text/event-stream')
        res.writeHeader('Cache-Control', 'no-cache')
        res.writeHeader('X-Accel-Buffering', 'no')
        res.write(': connected\n\n')
      })
      heartbeat = setInterval(
        () => {
          if (blocked && Date.now() - blockedSince > idleMs) return finish()
          write(': heartbeat\n\n')
        },
        Math.min(HEARTBEAT_MS, idleMs / 2),
      )
    },
    refuse: (error) => {
      send(res, state, refusal(error))
      stop()
    },
    line: (line: LogLine) => write(`id: ${line.seq}\ndata: ${JSON.stringify(line)}\n\n`),
    end: (end: LogEnd) => {
      write(`id: ${end.seq}\nevent: end\ndata: ${endMessage(end)}\n\n`)
      finish()
    },
    fail: () => {
      if (open) return finish()
      send(res, state, problem(503, 'unavailable', 'reading the log index failed; retry shortly'))
      stop()
    },
    hasRoom: () => !blocked,
    whenRoom: () =>
      blocked && !state.aborted ? new Promise<void>((resolve) => waiters.push(resolve)) : Promise.resolve(),
  })
}

/**
 * Registers WebSocket upgrades for a log route; lines are sent as JSON text frames, then
 * `{event:'end'}`. An unknown run is a 404 instead of an upgrade.
 */
export function registerLogSockets(
  app: TemplatedApp,
  pattern: string,
  logs: LogStore,
  filterOf: (params: string[]) => LogFilter | undefined,
  caps: LogStreamCaps = {},
): void {
  app.ws<SocketData>(pattern, {
    maxPayloadLength: 4096,
    // A client that does not answer pings (it reads nothing) for this long is closed.
    idleTimeout: Math.max(caps.idleTimeoutSeconds ?? 120, MIN_WS_IDLE_SECONDS),
    sendPingsAutomatically: true,
    // uWS drops frames past this: lines stop at ROOM_BYTES, so only a closing socket gets near it.
    maxBackpressure: MAX_BUFFERED + ROOM_BYTES,
    upgrade: (res, req, context) => {
      const params = [req.getParameter(0) ?? '', req.getParameter(1) ?? '']
      const after =
        Number(new URLSearchParams(req.getQuery() ?? '').get('after') ?? req.getHeader('last-event-id') ?? 0) || 0
      const key = req.getHeader('sec-websocket-key')
      const protocol = chooseSubprotocol(req.getHeader('sec-websocket-protocol'))
      const extensions = req.getHeader('sec-websocket-extensions')
      const state = { aborted: false }
      const filter = filterOf(params)
      const request = readUpgradeRequest(req, filter ? { ...filter } : {})
      const refused = caps.guard?.refusal(request)
      if (refused) return send(res, state, refused)
      if (!filter) {
        send(
          res,
          state,
          problem(400, 'invalid', 'invalid driver or runid in the path', [
            { path: ':runid', message: "must be 1-128 letters, digits, '-' or '_' (and the driver a valid name)" },
          ]),
        )
        return
      }
      const remote = remoteAddress(res)
      let address = remote
      let counted = false
      const uncount = (): void => {
        if (counted) caps.streams?.closed(address)
        counted = false
      }
      res.onAborted(() => {
        state.aborted = true
        uncount()
      })
      const refuse = (reply: ReturnType<typeof problem>): void => {
        uncount()
        send(res, state, reply)
      }
      void (caps.admit ? caps.admit(request) : Promise.resolve(undefined))
        .then(async (principal) => {
          if (state.aborted) return
          address = clientKey(principal, remote)
          if (caps.streams && !caps.streams.open(address, res)) return void (state.aborted = true)
          counted = true
          const known = await logs.known(filter.runid)
          if (state.aborted) return
          if (!known)
            return refuse(
              problem(
                404,
                'not-found',
                `run ${filter.runid} is unknown: no resource runs it and no line of it is stored`,
              ),
            )
          // From here the socket's close handler uncounts it.
          state.aborted = true
          counted = false
          res.cork(() => res.upgrade<SocketData>({ filter, after, address }, key, protocol, extensions, context))
        })
        .catch((error: unknown) => refuse(replyForError(error, caps.logger ?? createLogger('gateway'))))
    },
    open: (ws: WebSocket<SocketData>) => {
      const data = ws.getUserData()
      let waiters: (() => void)[] = []
      data.wake = () => {
        const woken = waiters
        waiters = []
        for (const resolve of woken) resolve()
      }
      const close = (code: number, reason: string): void => {
        if (data.closed) return
        data.closed = true
        data.unsubscribe?.()
        data.wake?.()
        ws.end(code, reason)
      }
      const sendText = (text: string): boolean => {
        if (data.closed) return false
        if (ws.getBufferedAmount() > MAX_BUFFERED) {
          close(1013, 'client too slow; reconnect with ?after=<last seq>')
          return false
        }
        ws.send(text, false)
        return true
      }
      data.unsubscribe = logs.subscribe(data.filter, {
        after: data.after,
        open: () => {},
        // The run was known at the upgrade; it can be gone since (a replaced run without lines).
        refuse: (error) => {
          sendText(JSON.stringify({ event: 'error', code: error.code, message: error.message }))
          // Etcd could not say whether the run exists: try again later (1013), not "unknown run" (4404).
          if (error.kind === 'unavailable') close(1013, 'etcd is unavailable; reconnect with ?after=<last seq>')
          else close(4404, 'unknown run')
        },
        line: (line) => void sendText(JSON.stringify(line)),
        end: (end) => {
          if (sendText(endMessage(end))) close(1000, 'run ended')
        },
        fail: () => close(1011, 'reading the log index failed; reconnect with ?after=<last seq>'),
        hasRoom: () => !data.closed && ws.getBufferedAmount() < ROOM_BYTES,
        whenRoom: () =>
          data.closed || ws.getBufferedAmount() < ROOM_BYTES
            ? Promise.resolve()
            : new Promise<void>((resolve) => waiters.push(resolve)),
      })
    },
    drain: (ws) => {
      const data = ws.getUserData()
      if (ws.getBufferedAmount() < ROOM_BYTES) data.wake?.()
    },
    close: (ws) => {
      const data = ws.getUserData()
      caps.streams?.closed(data.address)
      data.closed = true
      data.unsubscribe?.()
      data.wake?.()
    },
  })
}
