import type { HttpResponse, TemplatedApp, WebSocket } from 'uWebSockets.js'
import type { LogEnd, LogLine } from '../definitions/objects.ts'
import type { LogFilter, LogStore } from './log-store.ts'
import { statusLine } from './http.ts'

const HEARTBEAT_MS = 15_000
/** A WebSocket whose client reads slower than this many buffered bytes is closed (it can resume with `?after=`). */
const MAX_WS_BUFFER = 8 * 1024 * 1024

interface SocketData {
  readonly filter: LogFilter
  readonly after: number
  unsubscribe?: () => void
  closed?: boolean
}

export const endMessage = (end: LogEnd): string => JSON.stringify({ event: 'end', ...end })

/** Serves a log subscription as Server-Sent Events: `id:` is the line's sequence, `event: end` closes the run. */
export function streamSse(res: HttpResponse, logs: LogStore, filter: LogFilter, after: number): void {
  let open = true
  let unsubscribe: (() => void) | undefined
  const heartbeat = setInterval(() => write(': heartbeat\n\n'), HEARTBEAT_MS)
  const stop = (): void => {
    open = false
    clearInterval(heartbeat)
    unsubscribe?.()
  }
  res.onAborted(stop)
  let buffered = 0
  res.onWritable(() => {
    buffered = 0
    return true
  })
  const write = (text: string): void => {
    if (!open) return
    let ok = true
    res.cork(() => {
      ok = res.write(text)
    })
    if (ok) return
    buffered += text.length
    if (buffered > MAX_WS_BUFFER) {
      // The client reads slower than the run logs: cut it off; it resumes with Last-Event-ID.
      stop()
      res.cork(() => res.end())
    }
  }
  res.cork(() => {
    res.writeStatus(statusLine(200))
    res.writeHeader('Content-Type', 'text/event-stream')
    res.writeHeader('Cache-Control', 'no-cache')
    res.writeHeader('X-Accel-Buffering', 'no')
    res.write(': connected\n\n')
  })
  unsubscribe = logs.subscribe(filter, {
    filter,
    after,
    line: (line: LogLine) => write(`id: ${line.seq}\ndata: ${JSON.stringify(line)}\n\n`),
    end: (end: LogEnd) => {
      if (!open) return
      write(`id: ${end.seq}\nevent: end\ndata: ${endMessage(end)}\n\n`)
      stop()
      res.cork(() => res.end())
    },
  })
}

/** Registers WebSocket upgrades for a log route; lines are sent as JSON text frames, then `{event:'end'}`. */
export function registerLogSockets(
  app: TemplatedApp,
  pattern: string,
  logs: LogStore,
  filterOf: (params: string[]) => LogFilter | undefined,
): void {
  app.ws<SocketData>(pattern, {
    maxPayloadLength: 4096,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const params = [req.getParameter(0) ?? '', req.getParameter(1) ?? '']
      const after =
        Number(new URLSearchParams(req.getQuery() ?? '').get('after') ?? req.getHeader('last-event-id') ?? 0) || 0
      const key = req.getHeader('sec-websocket-key')
      const protocol = req.getHeader('sec-websocket-protocol')
      const extensions = req.getHeader('sec-websocket-extensions')
      const filter = filterOf(params)
      if (!filter) {
        res.cork(() =>
          res
            .writeStatus(statusLine(400))
            .writeHeader('Content-Type', 'application/problem+json')
            .end(
              JSON.stringify({
                type: 'urn:conveyor:problem:invalid',
                title: 'Bad Request',
                status: 400,
                detail: 'invalid driver or runid in the path',
              }),
            ),
        )
        return
      }
      res.upgrade<SocketData>({ filter, after }, key, protocol, extensions, context)
    },
    open: (ws: WebSocket<SocketData>) => {
      const data = ws.getUserData()
      const sendText = (text: string): boolean => {
        if (data.closed) return false
        if (ws.getBufferedAmount() > MAX_WS_BUFFER) {
          data.closed = true
          ws.end(1013, 'client too slow; reconnect with ?after=<last seq>')
          return false
        }
        ws.send(text, false)
        return true
      }
      data.unsubscribe = logs.subscribe(data.filter, {
        filter: data.filter,
        after: data.after,
        line: (line) => void sendText(JSON.stringify(line)),
        end: (end) => {
          if (sendText(endMessage(end))) {
            data.closed = true
            ws.end(1000, 'run ended')
          }
        },
      })
    },
    close: (ws) => {
      const data = ws.getUserData()
      data.closed = true
      data.unsubscribe?.()
    },
  })
}
