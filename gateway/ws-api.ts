import type { TemplatedApp, WebSocket } from 'uWebSockets.js'
import { isValidName } from '../definitions/names.ts'
import { ConveyorError } from '../runtime/errors.ts'
import type { Logger } from '../runtime/logger.ts'
import type { LogStore } from './log-store.ts'
import type { ResourceChange, WatchHub } from './watch-hub.ts'
import { parseLabelSelector } from './routes/resources.ts'
import { endMessage } from './log-streaming.ts'

/** A socket whose client reads slower than this many buffered bytes is closed; it resumes from its last revision. */
const MAX_BUFFER = 16 * 1024 * 1024
const RUNID = /^[A-Za-z0-9_-]{1,128}$/
const ID = /^[A-Za-z0-9_.:-]{1,64}$/

interface SocketState {
  readonly subscriptions: Map<string, () => void>
  closed: boolean
}

/** A change's JSON without the subscription id, encoded once however many watchers get it. */
const encoded = new WeakMap<ResourceChange, string>()
function encode(change: ResourceChange): string {
  let text = encoded.get(change)
  if (text === undefined) {
    text = JSON.stringify({
      type: 'change',
      kind: change.kind,
      revision: change.revision,
      object: change.object,
    }).slice(1)
    encoded.set(change, text)
  }
  return text
}

class RequestError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message)
  }
}

function field<T>(
  request: Record<string, unknown>,
  name: string,
  check: (value: unknown) => value is T,
  what: string,
  optional = false,
): T | undefined {
  const value = request[name]
  if (value === undefined && optional) return undefined
  if (!check(value)) throw new RequestError(`/${name}`, `${name} must be ${what}`)
  return value
}

const isString = (value: unknown): value is string => typeof value === 'string'
const isRevision = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0

/**
 * `GET /ws`: one WebSocket, many subscriptions, each named by the client's `id`.
 *
 * - `{"op":"watch","id","type","labelSelector"?,"fromRevision"?}`: without `fromRevision`, the
 *   current list (`{"type":"list","revision","items"}`), then every change after it; with it,
 *   every change after that revision (a resume). Changes are `{"type":"change","kind","revision","object"}`
 *   in commit order. A compacted revision answers `{"type":"error","code":"compacted"}`: list again.
 * - `{"op":"logs","id","runid","driver"?,"after"?}`: a run's log lines (`{"type":"log","line"}`), then `{"type":"end"}`.
 * - `{"op":"replay","id","replay"}`: a replay's progress (`{"type":"progress","delivered","total","status"}`) until it is done.
 * - `{"op":"unsubscribe","id"}`.
 */
export function registerWsApi(
  app: TemplatedApp,
  watches: WatchHub,
  logs: LogStore,
  replays: (id: string) => Promise<{ delivered: number; total: number; status: string }>,
  logger: Logger,
): void {
  app.ws<SocketState>('/ws', {
    maxPayloadLength: 16 * 1024,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      res.upgrade<SocketState>(
        { subscriptions: new Map(), closed: false },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      )
    },
    message: (ws, data) => {
      let request: Record<string, unknown>
      try {
        request = JSON.parse(Buffer.from(data).toString()) as Record<string, unknown>
        if (typeof request !== 'object' || request === null || Array.isArray(request)) throw new Error('not an object')
      } catch {
        send(
          ws,
          JSON.stringify({ type: 'error', code: 'invalid', message: 'a request is a JSON object {op, id, ...}' }),
        )
        return
      }
      const id = typeof request.id === 'string' ? request.id : undefined
      try {
        handle(ws, request)
      } catch (error) {
        if (error instanceof RequestError)
          send(
            ws,
            JSON.stringify({
              ...(id ? { id } : {}),
              type: 'error',
              code: 'invalid',
              message: error.message,
              errors: [{ path: error.path, message: error.message }],
            }),
          )
        else if (error instanceof ConveyorError)
          send(
            ws,
            JSON.stringify({
              ...(id ? { id } : {}),
              type: 'error',
              code: error.code,
              message: error.message,
              ...(error.errors ? { errors: error.errors } : {}),
            }),
          )
        else {
          logger.error('websocket request failed', { error: String(error) })
          send(
            ws,
            JSON.stringify({ ...(id ? { id } : {}), type: 'error', code: 'internal', message: 'the request failed' }),
          )
        }
      }
    },
    close: (ws) => {
      const state = ws.getUserData()
      state.closed = true
      for (const stop of state.subscriptions.values()) stop()
      state.subscriptions.clear()
    },
  })

  function send(ws: WebSocket<SocketState>, text: string): void {
    const state = ws.getUserData()
    if (state.closed) return
    if (ws.getBufferedAmount() > MAX_BUFFER) {
      state.closed = true
      ws.end(1013, 'client too slow; resume each watch from the last revision it received')
      return
    }
    ws.send(text, false)
  }

  function handle(ws: WebSocket<SocketState>, request: Record<string, unknown>): void {
    const state = ws.getUserData()
    const op = field(request, 'op', isString, 'watch, logs, replay or unsubscribe')!
    const id = field(request, 'id', (v): v is string => isString(v) && ID.test(v), '1-64 letters, digits, _ . : or -')!
    if (op === 'unsubscribe') {
      state.subscriptions.get(id)?.()
      state.subscriptions.delete(id)
      return
    }
    if (state.subscriptions.has(id)) throw new RequestError('/id', `subscription ${id} already exists on this socket`)
    const prefix = `{"id":${JSON.stringify(id)},`
    const out = (body: Record<string, unknown>): void => send(ws, prefix + JSON.stringify(body).slice(1))
    if (op === 'watch') {
      const type = field(request, 'type', (v): v is string => isValidName(v), 'a resource type name')!
      const selectorText = field(request, 'labelSelector', isString, 'a label selector', true)
      const selector = selectorText ? parseLabelSelector(selectorText) : undefined
      const fromRevision = field(request, 'fromRevision', isRevision, 'a revision number', true)
      let stop: (() => void) | undefined
      let cancelled = false
      state.subscriptions.set(id, () => {
        cancelled = true
        stop?.()
      })
      const start = (revision: number): void => {
        stop = watches.subscribe(type, revision, {
          change: (change) => {
            if (!selector || selector(change.labels)) send(ws, prefix + encode(change))
          },
          fail: (code, message) => {
            state.subscriptions.delete(id)
            out({
              type: 'error',
              code,
              message:
                code === 'compacted'
                  ? `${message}: the changes after revision ${revision} are gone; watch again without fromRevision for a fresh list`
                  : message,
            })
          },
        })
      }
      if (fromRevision !== undefined) return start(fromRevision)
      void watches
        .list(type)
        .then(({ items, revision }) => {
          if (cancelled || state.closed) return
          out({
            type: 'list',
            revision,
            items: selector
              ? items.filter((item) => selector((item.metadata as { labels?: Record<string, string> }).labels ?? {}))
              : items,
          })
          start(revision)
        })
        .catch((error: unknown) => {
          state.subscriptions.delete(id)
          out({ type: 'error', code: 'unavailable', message: `listing ${type} failed: ${String(error)}` })
        })
      return
    }
    if (op === 'logs') {
      const runid = field(
        request,
        'runid',
        (v): v is string => isString(v) && RUNID.test(v),
        "1-128 letters, digits, '-' or '_'",
      )!
      const driver = field(request, 'driver', (v): v is string => isValidName(v), 'a driver name', true)
      const after = field(request, 'after', isRevision, 'a log sequence number', true)
      const filter = { runid, ...(driver ? { driver } : {}) }
      let ended = false
      const unsubscribe = logs.subscribe(filter, {
        filter,
        ...(after !== undefined ? { after } : {}),
        line: (line) => out({ type: 'log', line }),
        end: (end) => {
          ended = true
          state.subscriptions.get(id)?.()
          state.subscriptions.delete(id)
          send(ws, prefix + endMessage(end).slice(1).replace('"event":"end"', '"type":"end"'))
        },
      })
      // The end can come while subscribing (a finished run): then there is nothing to keep.
      if (ended) return unsubscribe()
      state.subscriptions.set(id, unsubscribe)
      return
    }
    if (op === 'replay') {
      const replay = field(
        request,
        'replay',
        (v): v is string => isString(v) && /^[a-f0-9]{12}$/.test(v),
        'a replay id (12 hex digits)',
      )!
      let last = ''
      let timer: NodeJS.Timeout | undefined
      const poll = async (): Promise<void> => {
        try {
          const progress = await replays(replay)
          const text = `${progress.delivered}/${progress.total}/${progress.status}`
          if (text !== last)
            out({
              type: 'progress',
              replay,
              delivered: progress.delivered,
              total: progress.total,
              status: progress.status,
            })
          last = text
          if (progress.status === 'done') return void state.subscriptions.delete(id)
        } catch (error) {
          state.subscriptions.delete(id)
          return out({
            type: 'error',
            code: error instanceof ConveyorError ? error.code : 'unavailable',
            message: error instanceof Error ? error.message : String(error),
          })
        }
        if (state.subscriptions.has(id)) timer = setTimeout(() => void poll(), 200)
      }
      state.subscriptions.set(id, () => clearTimeout(timer))
      void poll()
      return
    }
    throw new RequestError('/op', `unknown op ${op}: use watch, logs, replay or unsubscribe`)
  }
}
