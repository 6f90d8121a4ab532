import { join } from 'node:path'
import type { HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js'
import type { Connections } from '../runtime/connections.ts'
import { DefinitionStore } from '../runtime/definition-store.ts'
import { ResourceStore } from '../runtime/resource-store.ts'
import { Outbox } from '../runtime/outbox.ts'
import { TxnBatcher } from '../runtime/txn-batcher.ts'
import { notFound, unavailable } from '../runtime/errors.ts'
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
import { problem, readBody, readRequestHead, replyForError, send, type ApiReply, type ApiRequest } from './http.ts'
import { remoteAddress } from './stream-caps.ts'
import { Router } from './router.ts'
import { BrowserGuard, isLoopbackHost } from './browser-guard.ts'
import { Authenticator, clientKey, type Principal } from './auth.ts'
import { CLOSED_ROUTE, routePolicies, type RoutePolicy } from './access-policy.ts'
import { TokenStore } from '../runtime/token-store.ts'
import { registerTokenRoutes } from './routes/tokens.ts'
import { RequestRates, type RateLimits } from './rate-limit.ts'
import { rateLimitsFromEnv } from '../runtime/config.ts'
import { readKeys } from '../runtime/etcd-ops.ts'
import { keys } from '../runtime/keys.ts'
import { ConveyorError } from '../runtime/errors.ts'
import { registerDefinitionRoutes } from './routes/definitions.ts'
import { registerPipelineRoutes } from './routes/pipelines.ts'
import { registerDriverRoutes } from './routes/drivers.ts'
import { replayBuckets } from '../runtime/replays.ts'
import { registerDriverIdentityRoute } from './routes/driver-identity.ts'
import { registerOpenApiRoutes } from './routes/openapi.ts'
import { packageVersion } from '../runtime/package-version.ts'
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
  /** Web origins answered besides the gateway's own (`CONVEYOR_ALLOWED_ORIGINS`). @default [] */
  readonly allowedOrigins?: readonly string[]
  /** Bearer tokens on every route but `/health` (and `/ready` without detail); off only on a loopback address. @default true */
  readonly auth?: boolean
  /** Requests per second per token (0: none) and failed token checks per address; default from the environment. */
  readonly rateLimits?: RateLimits
}

/** A running gateway. */
export interface Gateway {
  readonly port: number
  readonly url: string
  readonly resources: ResourceStore
  readonly definitions: DefinitionStore
  readonly logs: LogStore
  /** Every HTTP route as `METHOD /pattern` (each has an access policy, or needs an admin). */
  readonly routes: readonly string[]
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
const LOG_STREAM = /^\/logs\/streams\/([^/]+)\/([^/]+)\/?$/
const PIPELINE_STREAM = /^\/logs\/pipeline\/([^/]+)\/?$/
const RUNID = /^[A-Za-z0-9_-]{1,128}$/
/** The policy every log stream (SSE and WebSocket) is admitted by. */
const LOG_STREAM_POLICY = 'GET /logs/streams/:driver/:runid'

/** Starts the HTTP/WebSocket gateway on uWebSockets.js. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const uws = await loadUws()
  const logger = options.logger ?? createLogger('gateway')
  const { connections } = options
  const host = options.host ?? '127.0.0.1'
  if (options.auth === false && !isLoopbackHost(host))
    throw new ConveyorError(
      'auth-required',
      `auth can be turned off only on a loopback address, and the gateway would listen on ${host}; bind 127.0.0.1 or keep auth on`,
    )
  const tokens = new TokenStore(connections.etcd)
  const auth = new Authenticator(options.auth === false ? undefined : tokens)
  const rates = new RequestRates(options.rateLimits ?? rateLimitsFromEnv())
  /** Admits a call (401/403), then counts it against its token's budget (429); failed token checks count against the address. */
  const admitted = async (
    policy: RoutePolicy,
    request: ApiRequest,
    what: string,
    address: string,
  ): Promise<Principal | undefined> => {
    if (policy.access === 'public') return await auth.admit(policy, request, what)
    // Only a token that must be looked up can be a guess: known good ones are never held back.
    if (!auth.knownGood(request.headers)) await rates.checkFailures(address)
    let principal: Principal | undefined
    try {
      principal = await auth.admit(policy, request, what)
    } catch (error) {
      if (error instanceof ConveyorError && error.status === 401) await rates.failed(address)
      throw error
    }
    // Without auth (loopback only) every caller is the same anonymous admin: nothing to tell apart.
    if (auth.enabled) await rates.request(clientKey(principal, address))
    return principal
  }
  const maxBodyBytes = options.maxBodyBytes ?? 256 * 1024
  const batcher = new TxnBatcher(connections.etcd)
  const outbox = new Outbox(
    connections,
    logger,
    options.outboxSweepIntervalMs ? { sweepIntervalMs: options.outboxSweepIntervalMs } : {},
  )
  const definitions = new DefinitionStore(connections, batcher, outbox, lifecycles)
  const registry = await DriverRegistry.open(connections, logger)
  // Every bucket a driver uses exists before one signs in: a driver identity may not create them.
  await replayBuckets(connections)
  const resources = new ResourceStore(connections, batcher, outbox, definitions, actorInitializer, {
    driverIsLive: (driver) => registry.isLive(driver),
  })
  const logs = await LogStore.open(join(options.dataDir, 'logs'), connections, logger)
  await outbox.start()

  const requireNats = (): void => {
    if (!connections.natsConnected()) throw unavailable('NATS is unavailable; retry shortly')
  }
  const router = new Router()
  // Every route of an unknown resource type is a 404, as a POST of one is (not an empty list).
  router.param('type', async (type) => {
    if (isValidName(type) && !(await definitions.compiled(type)))
      throw notFound(`resource type ${type} is not defined: no resource definition is named ${type}`)
  })
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
  registerTokenRoutes(router, tokens)
  registerDriverIdentityRoute(router, { etcd: connections.etcd, jsm: connections.jsm, tokens })
  registerOpenApiRoutes(router, packageVersion())
  const runType = async (runid: string): Promise<string | undefined> => {
    const { values } = await readKeys(connections.etcd, [keys.run(runid)])
    return values[0] ? (JSON.parse(values[0].value) as { type?: string }).type : undefined
  }
  const policies = routePolicies(runType)

  const app: TemplatedApp = uws.App()
  const guard = new BrowserGuard({ bindHost: host, allowedOrigins: options.allowedOrigins ?? [] })
  const limits = streamLimits(options.streamLimits)
  const streams = new StreamsPerClient(limits.connectionsPerClient)
  const logCaps = {
    streams,
    idleTimeoutSeconds: limits.idleTimeoutSeconds,
    guard,
    logger,
    admit: (request: ApiRequest) =>
      auth.admit(policies[LOG_STREAM_POLICY] ?? CLOSED_ROUTE, request, 'GET /logs/streams/:driver/:runid'),
  }
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
    guard,
    auth,
    runType,
    logger,
  })

  app.any('/*', (res, req) => {
    const head = readRequestHead(req)
    const state = { aborted: false, head: head.method === 'HEAD' }
    res.onAborted(() => {
      state.aborted = true
    })
    const refused = guard.refusal(head)
    if (refused) return send(res, state, refused)
    if (head.method === 'GET' && tryStream(res, state, head, logs, logCaps, logger)) return
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
    const address = remoteAddress(res)
    const hasBody = BODY_METHODS.has(head.method) && (length > 0 || head.headers.has('transfer-encoding'))
    const untyped = guard.contentTypeRefusal(head, hasBody)
    if (untyped) return send(res, state, untyped, hasBody)
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
        const request = { ...head, body, params: match.params }
        const principal = await admitted(policies[match.route] ?? CLOSED_ROUTE, request, match.route, address)
        reply = await match.handler(principal ? { ...request, principal } : request)
      } catch (error) {
        reply = replyForError(error, logger)
      }
      send(res, state, reply)
    })()
  })

  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen(host, options.port ?? 8080, (socket) =>
      socket
        ? resolve(socket)
        : reject(new Error(`cannot listen on ${host}:${options.port ?? 8080}: is the port in use?`)),
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
    url: `http://${host}:${port}`,
    resources,
    definitions,
    logs,
    routes: router.routes(),
    close,
    [Symbol.asyncDispose]: close,
  }
}

function tryStream(
  res: HttpResponse,
  state: { aborted: boolean },
  head: { path: string; query: URLSearchParams; headers: ReadonlyMap<string, string>; method: string },
  logs: LogStore,
  caps: LogStreamCaps,
  logger: Logger,
): boolean {
  const driverMatch = LOG_STREAM.exec(head.path)
  const pipelineMatch = driverMatch ? null : PIPELINE_STREAM.exec(head.path)
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
  const after = Number(head.query.get('after') ?? head.headers.get('last-event-id') ?? 0) || 0
  const filter = { runid, ...(driver ? { driver } : {}) }
  const address = remoteAddress(res)
  void (caps.admit ? caps.admit({ ...head, body: Buffer.alloc(0), params: filter }) : Promise.resolve(undefined)).then(
    (principal) => {
      if (!state.aborted) streamSse(res, logs, filter, after, caps, clientKey(principal, address))
    },
    (error: unknown) => send(res, state, replyForError(error, logger)),
  )
  return true
}
