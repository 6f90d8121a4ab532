import { join } from 'node:path'
import type { HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js'
import type { Connections } from '../runtime/connections.ts'
import { DefinitionStore } from '../runtime/definition-store.ts'
import { ResourceStore } from '../runtime/resource-store.ts'
import { Outbox } from '../runtime/outbox.ts'
import { TxnBatcher } from '../runtime/txn-batcher.ts'
import { unavailable } from '../runtime/errors.ts'
import { createLogger, type Logger } from '../runtime/logger.ts'
import { isValidName } from '../definitions/names.ts'
import { LogStore } from './log-store.ts'
import { registerLogSockets, streamSse, type LogStreamCaps } from './log-streaming.ts'
import { WatchHub } from './watch-hub.ts'
import { registerWsApi } from './ws-api.ts'
import { StreamsPerClient } from './stream-caps.ts'
import { HistoryReader } from './history-reader.ts'
import { streamLimits, type StreamLimits } from '../runtime/config.ts'
import { replayProgress } from '../runtime/replays.ts'
import { problem, readBody, readRequestHead, replyForError, send, type ApiReply } from './http.ts'
import { Router } from './router.ts'
import { registerDefinitionRoutes } from './routes/definitions.ts'
import { registerPipelineRoutes } from './routes/pipelines.ts'
import { registerDriverRoutes } from './routes/drivers.ts'
import { DriverRegistry } from '../runtime/driver-registry.ts'
import { registerReplayRoutes } from './routes/replay.ts'
import { PipelineStore } from '../runtime/pipeline-store.ts'
import { registerResourceRoutes } from './routes/resources.ts'
import { registerLogRoutes } from './routes/logs.ts'
import { registerHealthRoutes } from './routes/health.ts'
import { registerActorRoutes } from './routes/actors.ts'
import { ReplyInbox } from '../runtime/inbox.ts'
import { loadUws } from './uws.ts'
import { lifecycles } from '../actors/lifecycle/lifecycles.ts'
import { actorInitializer } from '../actors/lifecycle/initializer.ts'

/** Options of one gateway process. */
export interface GatewayOptions {
  readonly connections: Connections
  /** TCP port; `0` picks a free one. @default 8080 */
  readonly port?: number
  /** Address to bind. @default '127.0.0.1' */
  readonly host?: string
  /** Directory of this gateway's LevelDB log index (one gateway per directory). */
  readonly dataDir: string
  /** Largest accepted request body in bytes. @default 262144 */
  readonly maxBodyBytes?: number
  readonly logger?: Logger
  /** How often the outbox is swept for events a crashed writer left behind. @default 5000 */
  readonly outboxSweepIntervalMs?: number
  /** How long `POST …/events` waits for the actor's answer before answering 202. @default 10000 */
  readonly eventReplyTimeoutMs?: number
  /** Caps of `/ws` and the other streams; what is not given comes from the environment or the defaults. */
  readonly streamLimits?: Partial<StreamLimits>
}

/** A running gateway. */
export interface Gateway {
  readonly port: number
  readonly url: string
  readonly resources: ResourceStore
  readonly definitions: DefinitionStore
  readonly logs: LogStore
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
const LOG_STREAM = /^\/logs\/streams\/([^/]+)\/([^/]+)\/?$/
const PIPELINE_STREAM = /^\/logs\/pipeline\/([^/]+)\/?$/
const RUNID = /^[A-Za-z0-9_-]{1,128}$/

/** Starts the HTTP/WebSocket gateway on uWebSockets.js. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const uws = await loadUws()
  const logger = options.logger ?? createLogger('gateway')
  const { connections } = options
  const maxBodyBytes = options.maxBodyBytes ?? 256 * 1024
  const batcher = new TxnBatcher(connections.etcd)
  const outbox = new Outbox(
    connections,
    logger,
    options.outboxSweepIntervalMs ? { sweepIntervalMs: options.outboxSweepIntervalMs } : {},
  )
  const definitions = new DefinitionStore(connections, batcher, outbox, lifecycles)
  const registry = await DriverRegistry.open(connections, logger)
  const resources = new ResourceStore(connections, batcher, outbox, definitions, actorInitializer, {
    driverIsLive: (driver) => registry.isLive(driver),
  })
  const logs = await LogStore.open(join(options.dataDir, 'logs'), connections, logger)
  await outbox.start()

  const requireNats = (): void => {
    if (!connections.natsConnected()) throw unavailable('NATS is unavailable; retry shortly')
  }
  const router = new Router()
  registerHealthRoutes(router, connections)
  registerDefinitionRoutes(router, definitions)
  registerPipelineRoutes(router, new PipelineStore(connections, batcher, outbox), (driver) => registry.isKnown(driver))
  registerDriverRoutes(router, registry)
  const replies = new ReplyInbox(connections.nats)
  // Before the resource routes: `/resources/:type/:name/actor` must win over `/:version`.
  const history = new HistoryReader(connections)
  registerActorRoutes(router, connections, resources, replies, requireNats, {
    history,
    ...(options.eventReplyTimeoutMs ? { eventReplyTimeoutMs: options.eventReplyTimeoutMs } : {}),
  })
  registerResourceRoutes(router, resources, requireNats)
  registerLogRoutes(router, connections, logs, requireNats)
  registerReplayRoutes(router, connections, requireNats, registry)

  const app: TemplatedApp = uws.App()
  const limits = streamLimits(options.streamLimits)
  const streams = new StreamsPerClient(limits.connectionsPerClient)
  const logCaps = { streams, idleTimeoutSeconds: limits.idleTimeoutSeconds }
  const runFilter = (params: string[]) =>
    isValidName(params[0]) && RUNID.test(params[1] ?? '') ? { driver: params[0], runid: params[1]! } : undefined
  registerLogSockets(app, '/logs/streams/:driver/:runid', logs, runFilter, logCaps)
  registerLogSockets(app, '/logs/streams/:driver/:runid/', logs, runFilter, logCaps)
  const pipelineFilter = (params: string[]) => (RUNID.test(params[0] ?? '') ? { runid: params[0]! } : undefined)
  registerLogSockets(app, '/logs/pipeline/:runid', logs, pipelineFilter, logCaps)
  registerLogSockets(app, '/logs/pipeline/:runid/', logs, pipelineFilter, logCaps)
  const watches = new WatchHub(connections.etcd, logger, { resumeBufferBytes: limits.resumeBufferBytes })
  registerWsApi(app, {
    watches,
    logs,
    replays: (id) => replayProgress(connections, id),
    limits,
    streams,
    logger,
  })

  app.any('/*', (res, req) => {
    const state = { aborted: false }
    res.onAborted(() => {
      state.aborted = true
    })
    const head = readRequestHead(req)
    if (head.method === 'GET' && tryStream(res, state, head.path, head.query, head.headers, logs, logCaps)) return
    const match = router.match(head.method, head.path)
    if (match.kind === 'not-found')
      return send(res, state, problem(404, 'route-not-found', `no route ${head.method} ${head.path}`))
    if (match.kind === 'method-not-allowed') {
      const reply = problem(
        405,
        'method-not-allowed',
        `${head.method} is not allowed on ${head.path}; use ${match.allowed.join(', ')}`,
      )
      return send(res, state, { ...reply, headers: { ...reply.headers, Allow: match.allowed.join(', ') } })
    }
    const limit = Math.min(maxBodyBytes, match.options.maxBodyBytes ?? maxBodyBytes)
    const length = Number(head.headers.get('content-length') ?? 0)
    if (length > limit)
      return send(
        res,
        state,
        problem(413, 'too-large', `request body of ${length} bytes is over the limit of ${limit}`),
        true,
      )
    const hasBody = BODY_METHODS.has(head.method) && (length > 0 || head.headers.has('transfer-encoding'))
    void (async () => {
      let body: Buffer = Buffer.alloc(0)
      if (hasBody) {
        const read = await readBody(res, limit)
        if (read === undefined)
          return send(res, state, problem(413, 'too-large', `request body is over the limit of ${limit} bytes`), true)
        body = read
      }
      let reply: ApiReply
      try {
        reply = await match.handler({ ...head, body, params: match.params })
      } catch (error) {
        reply = replyForError(error, logger)
      }
      send(res, state, reply)
    })()
  })

  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen(options.host ?? '127.0.0.1', options.port ?? 8080, (socket) =>
      socket
        ? resolve(socket)
        : reject(
            new Error(`cannot listen on ${options.host ?? '127.0.0.1'}:${options.port ?? 8080}: is the port in use?`),
          ),
    )
  })
  const port = uws.us_socket_local_port(listenSocket)
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      uws.us_listen_socket_close(listenSocket)
      ;(app as { close?: () => void }).close?.()
      replies.close()
      watches.close()
      history.close()
      registry.close()
      await outbox.close()
      await logs.close()
    })()
    return closing
  }
  return {
    port,
    url: `http://${options.host ?? '127.0.0.1'}:${port}`,
    resources,
    definitions,
    logs,
    close,
    [Symbol.asyncDispose]: close,
  }
}

function tryStream(
  res: HttpResponse,
  state: { aborted: boolean },
  path: string,
  query: URLSearchParams,
  headers: ReadonlyMap<string, string>,
  logs: LogStore,
  caps: LogStreamCaps,
): boolean {
  const driverMatch = LOG_STREAM.exec(path)
  const pipelineMatch = driverMatch ? null : PIPELINE_STREAM.exec(path)
  if (!driverMatch && !pipelineMatch) return false
  const driver = driverMatch?.[1]
  const runid = (driverMatch?.[2] ?? pipelineMatch?.[1])!
  if ((driver !== undefined && !isValidName(driver)) || !RUNID.test(runid)) {
    send(
      res,
      state,
      problem(400, 'invalid', 'driver must be a valid name and runid 1-128 letters, digits, - or _', [
        { path: driver !== undefined && !isValidName(driver) ? ':driver' : ':runid', message: 'is invalid' },
      ]),
    )
    return true
  }
  const after = Number(query.get('after') ?? headers.get('last-event-id') ?? 0) || 0
  streamSse(res, logs, { runid, ...(driver ? { driver } : {}) }, after, caps)
  return true
}
