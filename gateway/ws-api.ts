import type { TemplatedApp, WebSocket } from 'uWebSockets.js'
import { isValidName } from '../definitions/names.ts'
import { ConveyorError, isCompactedError } from '../runtime/errors.ts'
import { STREAM_LIMIT_ENV, type StreamLimits } from '../runtime/config.ts'
import type { Logger } from '../runtime/logger.ts'
import type { LogStore } from './log-store.ts'
import type { ResourceChange, WatchHub, WatchSubscription } from './watch-hub.ts'
import { parseLabelSelector } from './routes/resources.ts'
import { endMessage } from './log-streaming.ts'
import { SocketOutbox } from './socket-outbox.ts'
import { remoteAddress, type StreamsPerClient } from './stream-caps.ts'
import type { BrowserGuard } from './browser-guard.ts'
import { readUpgradeRequest, replyForError, send as sendReply } from './http.ts'
import { chooseSubprotocol, clientKey, type Authenticator, type Principal } from './auth.ts'
import type { RoutePolicy } from './access-policy.ts'
import { readsRedacted } from './secret-redaction.ts'
import { redactResource, secretFieldsOf } from '../definitions/secret-fields.ts'

/** Log subscriptions whose run's type was checked against the token's types (never set from the client's JSON). */
const typeChecked = new WeakSet<object>()

/** `/ws` carries watches and logs (reads); each subscription checks the token's types. */
const WS_POLICY: RoutePolicy = { access: 'read', scope: 'shared' }

const RUNID = /^[A-Za-z0-9_-]{1,128}$/
const ID = /^[A-Za-z0-9_.:-]{1,64}$/
/** A WebSocket close reason holds at most 123 bytes. */
const MAX_REASON = 123

/** One subscription of a socket. */
interface Subscription {
  stop(): void
  /** Where the client picks it up again after a 1013 (`fromRevision`, `after`), or undefined: start it over. */
  resumeAt(): Record<string, number> | undefined
  /** uWS has only part of a revision's changes: hand it the rest before closing. */
  partial?(): boolean
}

interface SocketState {
  /** Whom the per-client caps count this socket against (its token, or its address). */
  readonly address: string
  readonly principal: Principal | undefined
  readonly subscriptions: Map<string, Subscription>
  outbox: SocketOutbox | undefined
  closed: boolean
}

const encoded = new WeakMap<ResourceChange, string>()
const encodedRedacted = new WeakMap<ResourceChange, string>()

/** A change's frame body (after `{`); `more` when another change of its revision follows on this watch. */
function encode(change: ResourceChange, redacted: boolean, more: boolean): string {
  const text = encodeChange(change, redacted)
  return more ? `${text.slice(0, -1)},"more":true}` : text
}

/**
 * A change's JSON without the subscription id, encoded once however many watchers get it; for
 * readers of redacted secrets (viewers) a second encoding, made only when the resource has secret fields.
 */
function encodeChange(change: ResourceChange, redacted: boolean): string {
  const secret = redacted && secretFieldsOf(change.object).length > 0
  const cache = secret ? encodedRedacted : encoded
  let text = cache.get(change)
  if (text === undefined) {
    text = JSON.stringify({
      type: 'change',
      kind: change.kind,
      revision: change.revision,
      object: secret ? redactResource(change.object) : change.object,
    }).slice(1)
    cache.set(change, text)
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

/** A request refused because the socket is at one of its limits. */
class LimitError extends Error {
  constructor(
    readonly limit: keyof StreamLimits,
    readonly max: number,
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

/** What `registerWsApi` needs besides the app. */
export interface WsApiDependencies {
  readonly watches: WatchHub
  readonly logs: LogStore
  readonly replays: (id: string) => Promise<{ delivered: number; total: number; status: string }>
  readonly limits: StreamLimits
  readonly streams: StreamsPerClient
  /** Refuses upgrades from foreign origins and rebound host names. */
  readonly guard?: BrowserGuard
  /** Checks the upgrade's token (a viewer may watch); each subscription checks the token's types. */
  readonly auth?: Authenticator
  /** A run's resource type, for tokens limited to types. */
  readonly runType?: (runid: string) => Promise<string | undefined>
  readonly logger: Logger
}

/**
 * `GET /ws`: one WebSocket, many subscriptions, each named by the client's `id`.
 *
 * - `{"op":"watch","id","type","labelSelector"?,"fromRevision"?}`: without `fromRevision`, the
 *   current list page by page (`{"type":"list","revision","items","more"}`, the last with
 *   `more: false`), then every change after it; with it, every change after that revision (a
 *   resume). Changes are `{"type":"change","kind","revision","object"}` in commit order. A
 *   compacted revision answers `{"type":"error","code":"compacted"}`: list again.
 * - `{"op":"logs","id","runid","driver"?,"after"?}`: a run's log lines (`{"type":"log","line"}`), then `{"type":"end"}`.
 * - `{"op":"replay","id","replay"}`: a replay's progress (`{"type":"progress","delivered","total","status"}`) until it ends (done, cancelled or expired).
 * - `{"op":"unsubscribe","id"}`.
 *
 * Nothing is dropped: frames wait for a slow client, watches pause. A client that falls too far
 * behind gets, per subscription, `{"type":"error","code":"too-slow","fromRevision"|"after"}` and
 * the socket closes with 1013; it resumes each subscription from there.
 */
export function registerWsApi(app: TemplatedApp, dependencies: WsApiDependencies): void {
  const { watches, logs, replays, limits, streams, guard, auth, runType, logger } = dependencies
  app.ws<SocketState>('/ws', {
    maxPayloadLength: 16 * 1024,
    idleTimeout: limits.idleTimeoutSeconds,
    sendPingsAutomatically: true,
    // The outbox decides what uWS gets: with a limit of its own, uWS would drop frames silently.
    maxBackpressure: 0,
    upgrade: (res, req, context) => {
      const request = readUpgradeRequest(req)
      const key = req.getHeader('sec-websocket-key')
      const protocol = chooseSubprotocol(req.getHeader('sec-websocket-protocol'))
      const extensions = req.getHeader('sec-websocket-extensions')
      const state = { aborted: false }
      const refused = guard?.refusal(request)
      if (refused) return sendReply(res, state, refused)
      const address = remoteAddress(res)
      res.onAborted(() => (state.aborted = true))
      void (auth ? auth.admit(WS_POLICY, request, 'GET /ws') : Promise.resolve(undefined)).then(
        (principal) => {
          if (state.aborted) return
          const client = clientKey(principal, address)
          if (!streams.open(client, res)) return
          res.cork(() =>
            res.upgrade<SocketState>(
              { address: client, principal, subscriptions: new Map(), outbox: undefined, closed: false },
              key,
              protocol,
              extensions,
              context,
            ),
          )
        },
        (error: unknown) => sendReply(res, state, replyForError(error, logger)),
      )
    },
    open: (ws) => {
      ws.getUserData().outbox = new SocketOutbox(ws, {
        maxQueuedBytes: limits.socketQueueBytes,
        overflow: () => giveUp(ws, `more than ${limits.socketQueueBytes} bytes wait for it`),
      })
    },
    drain: (ws) => ws.getUserData().outbox?.drain(),
    message: (ws, data) => {
      let request: Record<string, unknown>
      try {
        request = JSON.parse(Buffer.from(data).toString()) as Record<string, unknown>
        if (typeof request !== 'object' || request === null || Array.isArray(request)) throw new Error('not an object')
      } catch {
        send(ws, { type: 'error', code: 'invalid', message: 'a request is a JSON object {op, id, ...}' })
        return
      }
      const id = typeof request.id === 'string' ? request.id : undefined
      const withId = id ? { id } : {}
      try {
        handle(ws, request)
      } catch (error) {
        if (error instanceof RequestError)
          send(ws, {
            ...withId,
            type: 'error',
            code: 'invalid',
            message: error.message,
            errors: [{ path: error.path, message: error.message }],
          })
        else if (error instanceof LimitError)
          send(ws, {
            ...withId,
            type: 'error',
            code: 'limit',
            limit: error.limit,
            max: error.max,
            message: error.message,
          })
        else if (error instanceof ConveyorError)
          send(ws, {
            ...withId,
            type: 'error',
            code: error.code,
            message: error.message,
            ...(error.errors ? { errors: error.errors } : {}),
          })
        else {
          logger.error('websocket request failed', { error: String(error) })
          send(ws, { ...withId, type: 'error', code: 'internal', message: 'the request failed' })
        }
      }
    },
    close: (ws) => {
      const state = ws.getUserData()
      state.closed = true
      state.outbox?.close()
      for (const subscription of state.subscriptions.values()) subscription.stop()
      state.subscriptions.clear()
      streams.closed(state.address)
    },
  })

  function send(ws: WebSocket<SocketState>, body: Record<string, unknown>): void {
    ws.getUserData().outbox?.send(JSON.stringify(body))
  }

  /** The client reads too slowly to be served: each subscription says where to resume, then 1013. */
  function giveUp(ws: WebSocket<SocketState>, why: string): void {
    const state = ws.getUserData()
    if (state.closed) return
    state.closed = true
    // Every watch's frames end at a whole revision (it pauses only there), so it can resume exactly.
    const partial = [...state.subscriptions.values()].filter((subscription) => subscription.partial?.())
    state.outbox?.flushWhile(() => partial.some((subscription) => subscription.partial!()))
    state.outbox?.close()
    const resumes: [string, Record<string, number> | undefined][] = [...state.subscriptions].map(
      ([id, subscription]) => [id, subscription.resumeAt()],
    )
    // Straight to uWS, after what it already has: the outbox no longer sends.
    for (const [id, resume] of resumes)
      ws.send(
        JSON.stringify({
          id,
          type: 'error',
          code: 'too-slow',
          ...resume,
          message: resume
            ? `the client reads slower than the data arrives; subscribe again with ${Object.entries(resume)
                .map(([name, value]) => `${name} ${value}`)
                .join(', ')}`
            : 'the client reads slower than the data arrives; subscribe again from the start',
        }),
        false,
      )
    const only = resumes.length === 1 ? resumes[0]! : undefined
    const reason =
      only?.[1]?.fromRevision !== undefined
        ? `too slow: resume watch ${only[0]} from revision ${only[1].fromRevision}`
        : 'too slow: resume each subscription as its last message says'
    logger.warn('closing a websocket whose client reads too slow', {
      address: state.address,
      subscriptions: resumes.length,
      why,
    })
    ws.end(1013, Buffer.from(reason).subarray(0, MAX_REASON).toString())
  }

  function handle(ws: WebSocket<SocketState>, request: Record<string, unknown>): void {
    const state = ws.getUserData()
    const outbox = state.outbox!
    const op = field(request, 'op', isString, 'watch, logs, replay or unsubscribe')!
    const id = field(request, 'id', (v): v is string => isString(v) && ID.test(v), '1-64 letters, digits, _ . : or -')!
    if (op === 'unsubscribe') {
      state.subscriptions.get(id)?.stop()
      state.subscriptions.delete(id)
      return
    }
    if (state.subscriptions.has(id)) throw new RequestError('/id', `subscription ${id} already exists on this socket`)
    if (state.subscriptions.size >= limits.subscriptionsPerSocket)
      throw new LimitError(
        'subscriptionsPerSocket',
        limits.subscriptionsPerSocket,
        `a socket holds at most ${limits.subscriptionsPerSocket} subscriptions (${STREAM_LIMIT_ENV.subscriptionsPerSocket}); unsubscribe one or open another socket`,
      )
    const prefix = `{"id":${JSON.stringify(id)},`
    const out = (body: Record<string, unknown>, sent?: () => void): void =>
      outbox.send(prefix + JSON.stringify(body).slice(1), sent)
    const end = (): void => void state.subscriptions.delete(id)

    if (op === 'watch') {
      const type = field(request, 'type', (v): v is string => isValidName(v), 'a resource type name')!
      if (state.principal) auth?.authorizeType(state.principal, type)
      const selectorText = field(request, 'labelSelector', isString, 'a label selector', true)
      const selector = selectorText ? parseLabelSelector(selectorText) : undefined
      const fromRevision = field(request, 'fromRevision', isRevision, 'a revision number', true)
      /** Viewers read secret spec values redacted. */
      const redacted = readsRedacted(state.principal)
      /** The revision of the last change uWS has, and the last one whose every change (or the whole list) it has. */
      let handed = fromRevision
      let whole = fromRevision
      let subscription: WatchSubscription | undefined
      let cancelled = false
      let waiting = false
      state.subscriptions.set(id, {
        stop: () => {
          cancelled = true
          subscription?.stop()
        },
        resumeAt: () => (whole === undefined ? undefined : { fromRevision: whole }),
        partial: () => handed !== whole,
      })
      /** True while the socket has room; otherwise the watch pauses until it has. */
      const room = (): boolean => {
        if (outbox.hasRoom) return true
        if (!waiting) {
          waiting = true
          void outbox.whenRoom().then(() => {
            waiting = false
            if (!cancelled && !outbox.closed) subscription?.resume()
          })
        }
        return false
      }
      /** The last change this watch passes, sent once it is known whether another of its revision follows. */
      let held: ResourceChange | undefined
      const sendChange = (change: ResourceChange, more: boolean): void =>
        outbox.send(prefix + encode(change, redacted, more), () => (handed = change.revision))
      const watchFrom = (revision: number): void => {
        subscription = watches.subscribe(type, revision, {
          change: (change) => {
            if (!selector || selector(change.labels)) {
              if (held) sendChange(held, true)
              held = change
            }
            // One transaction may change several resources: a resume point is a revision the client
            // (and uWS) has all of, and the client knows it by the change without `more`.
            if (change.endsRevision) {
              if (held) sendChange(held, false)
              held = undefined
              outbox.mark(() => (handed = whole = change.revision))
            }
            return room()
          },
          fail: (code, message) => {
            if (code === 'too-slow') return giveUp(ws, message)
            end()
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
      if (fromRevision !== undefined) return watchFrom(fromRevision)
      void (async () => {
        for await (const page of watches.listPages(type, limits.listPageBytes, selector)) {
          await outbox.whenRoom()
          if (cancelled || outbox.closed) return
          const listed = page.revision
          out(
            {
              type: 'list',
              revision: page.revision,
              items: redacted ? page.items.map(redactResource) : page.items,
              more: page.more,
            },
            page.more ? undefined : () => (handed = whole = listed),
          )
          if (!page.more) watchFrom(page.revision)
        }
      })().catch((error: unknown) => {
        if (cancelled) return
        end()
        out(
          isCompactedError(error)
            ? {
                type: 'error',
                code: 'compacted',
                message: `the list of ${type} was compacted while it was read; watch again`,
              }
            : { type: 'error', code: 'unavailable', message: `listing ${type} failed: ${String(error)}` },
        )
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
      const from = field(request, 'after', isRevision, 'a log sequence number', true)
      const filter = { runid, ...(driver ? { driver } : {}) }
      if (state.principal?.types && !typeChecked.has(request)) {
        // A token limited to types reads the logs of its types' runs only: the run's type is read first.
        const principal = state.principal
        const placeholder = { stop: () => undefined, resumeAt: () => undefined }
        state.subscriptions.set(id, placeholder)
        void (runType ? runType(runid) : Promise.resolve(undefined))
          .then((type) => {
            if (state.subscriptions.get(id) !== placeholder || state.closed) return
            state.subscriptions.delete(id)
            if (type === undefined) auth?.authorizeAllTypes(principal, `read the log of run ${runid}`)
            else auth?.authorizeType(principal, type)
            const again = { ...request }
            typeChecked.add(again)
            handle(ws, again)
          })
          .catch((error: unknown) => {
            if (state.subscriptions.get(id) === placeholder) state.subscriptions.delete(id)
            out({
              type: 'error',
              code: error instanceof ConveyorError ? error.code : 'unavailable',
              message: error instanceof Error ? error.message : String(error),
            })
          })
        return
      }
      /** The sequence of the last line uWS has. */
      let handed = from
      // The store pages the backlog, and falls back to pages when the socket has no room.
      const unsubscribe = logs.subscribe(filter, {
        ...(from !== undefined ? { after: from } : {}),
        open: () => {},
        refuse: (error) => {
          end()
          out({ type: 'error', code: error.code, message: error.message })
        },
        fail: (error) => {
          end()
          out({ type: 'error', code: 'unavailable', message: `reading the log of ${runid} failed: ${String(error)}` })
        },
        line: (line) => out({ type: 'log', line }, () => (handed = line.seq)),
        end: (message) => {
          end()
          outbox.send(prefix + endMessage(message).slice(1).replace('"event":"end"', '"type":"end"'))
        },
        hasRoom: () => outbox.hasRoom,
        whenRoom: () => outbox.whenRoom(),
      })
      state.subscriptions.set(id, {
        stop: unsubscribe,
        resumeAt: () => (handed === undefined ? undefined : { after: handed }),
      })
      return
    }
    if (op === 'replay') {
      if (state.principal) auth?.authorizeAllTypes(state.principal, 'follow a replay')
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
          if (progress.status !== 'running') return end()
        } catch (error) {
          end()
          return out({
            type: 'error',
            code: error instanceof ConveyorError ? error.code : 'unavailable',
            message: error instanceof Error ? error.message : String(error),
          })
        }
        if (state.subscriptions.has(id)) timer = setTimeout(() => void poll(), 200)
      }
      state.subscriptions.set(id, { stop: () => clearTimeout(timer), resumeAt: () => undefined })
      void poll()
      return
    }
    throw new RequestError('/op', `unknown op ${op}: use watch, logs, replay or unsubscribe`)
  }
}
