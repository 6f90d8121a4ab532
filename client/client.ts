import { Transport, fillPath, type Answer, type ClientOptions } from './transport.ts'
import {
  followLog,
  watchResources,
  type FollowOptions,
  type LogStreamItem,
  type WatchEvent,
  type WatchOptions,
} from './streams.ts'
import type {
  ActorEvent,
  ActorView,
  CreatedToken,
  DefinitionInput,
  DriverIdentity,
  EventResult,
  HistoryPage,
  List,
  LogInput,
  LogLine,
  ParkedEvent,
  Pipeline,
  PipelineInput,
  Readiness,
  RegisteredDriver,
  ReplayProgress,
  ReplayRequest,
  Resource,
  ResourceDefinition,
  ResourceInput,
  TokenCreateRequest,
  TokenInfo,
  VerifyResult,
  Warned,
} from './types.ts'

/**
 * Every route the client calls, as the gateway's router names it (`METHOD /pattern`); streaming
 * routes (SSE and WebSocket) are served beside the router. A test checks that this covers every
 * route the gateway registers.
 */
export const CLIENT_ROUTES = {
  health: 'GET /health',
  ready: 'GET /ready',
  metrics: 'GET /metrics',
  openapi: 'GET /openapi.json',
  createDefinition: 'POST /resource-definitions',
  applyDefinition: 'POST /resource-definitions/apply',
  listDefinitions: 'GET /resource-definitions',
  getDefinition: 'GET /resource-definitions/:name',
  updateDefinition: 'PUT /resource-definitions/:name',
  deleteDefinition: 'DELETE /resource-definitions/:name',
  createPipeline: 'POST /pipelines',
  listPipelines: 'GET /pipelines',
  getPipeline: 'GET /pipelines/:name',
  updatePipeline: 'PUT /pipelines/:name',
  deletePipeline: 'DELETE /pipelines/:name',
  createResource: 'POST /resources',
  listResourcesUntyped: 'GET /resources',
  listResources: 'GET /resources/:type',
  getResource: 'GET /resources/:type/:name',
  updateResource: 'PUT /resources/:type/:name',
  deleteResource: 'DELETE /resources/:type/:name',
  versions: 'GET /resources/:type/:name/versions',
  version: 'GET /resources/:type/:name/:version',
  sendEvent: 'POST /resources/:type/:name/events',
  actor: 'GET /resources/:type/:name/actor',
  parked: 'GET /resources/:type/:name/actor/parked',
  resume: 'POST /resources/:type/:name/actor/resume',
  verify: 'GET /resources/:type/:name/verify',
  history: 'GET /resources/:type/:name/history',
  postLog: 'POST /logs',
  queryLogs: 'GET /logs',
  listDrivers: 'GET /drivers',
  driverIdentity: 'POST /drivers/:name/identity',
  createReplay: 'POST /replay',
  listReplays: 'GET /replay',
  getReplay: 'GET /replay/:id',
  cancelReplay: 'DELETE /replay/:id',
  createToken: 'POST /tokens',
  listTokens: 'GET /tokens',
  revokeToken: 'DELETE /tokens/:id',
  driverLogStream: 'GET /logs/streams/:driver/:runid',
  pipelineLogStream: 'GET /logs/pipeline/:runid',
  websocket: 'GET /ws',
} as const

/** A write's condition: the revision the object must still be at (`If-Match`; a stale one is a 412). */
export interface WriteOptions {
  readonly ifMatch?: number
  readonly signal?: AbortSignal
}

/** An object with the revision its `ETag` named. */
export type Tagged<T> = T & { readonly metadata: { readonly revision: number } }

/** The typed client of one gateway. Every method throws an `ApiError` for a refused request. */
export interface ConveyorClient {
  readonly url: string
  health(): Promise<{ status: string }>
  ready(): Promise<Readiness>
  /** The Prometheus exposition text of the gateway. */
  metrics(): Promise<string>
  /** The gateway's OpenAPI 3.1 document. */
  openapi(): Promise<Record<string, unknown>>
  definitions: {
    list(): Promise<ResourceDefinition[]>
    get(name: string): Promise<ResourceDefinition>
    create(input: DefinitionInput): Promise<ResourceDefinition>
    /** Creates or replaces; `created` tells which. */
    apply(input: DefinitionInput): Promise<{ definition: ResourceDefinition; created: boolean }>
    update(
      name: string,
      input: Omit<DefinitionInput, 'name'> & { name?: string },
      options?: WriteOptions,
    ): Promise<ResourceDefinition>
    delete(name: string, options?: WriteOptions): Promise<ResourceDefinition>
  }
  pipelines: {
    list(): Promise<Pipeline[]>
    get(name: string): Promise<Pipeline>
    create(input: PipelineInput): Promise<Warned<Pipeline>>
    update(
      name: string,
      input: Omit<PipelineInput, 'name'> & { name?: string },
      options?: WriteOptions,
    ): Promise<Warned<Pipeline>>
    delete(name: string, options?: WriteOptions): Promise<Pipeline>
  }
  resources: {
    list(type: string, options?: { labelSelector?: string; limit?: number; continue?: string }): Promise<List<Resource>>
    /** Every resource of the type, page after page. */
    all(type: string, options?: { labelSelector?: string }): AsyncGenerator<Resource>
    get(type: string, name: string, options?: { atRevision?: number }): Promise<Resource>
    create(input: ResourceInput): Promise<Resource>
    update(
      type: string,
      name: string,
      input: Omit<ResourceInput, 'name' | 'resource'> & Partial<ResourceInput>,
      options?: WriteOptions,
    ): Promise<Resource>
    delete(type: string, name: string, options?: WriteOptions): Promise<Resource>
    versions(type: string, name: string): Promise<number[]>
    version(type: string, name: string, version: number): Promise<Resource>
    send(type: string, name: string, event: ActorEvent): Promise<EventResult>
    actor(type: string, name: string): Promise<ActorView>
    parked(type: string, name: string): Promise<ParkedEvent[]>
    resume(type: string, name: string): Promise<{ resent: number }>
    verify(type: string, name: string): Promise<VerifyResult>
    history(
      type: string,
      name: string,
      options?: { after?: number; limit?: number; kind?: readonly string[] },
    ): Promise<HistoryPage>
    /** The type's resources, then every change as it commits; resumes by itself after a lost connection. */
    watch(type: string, options?: WatchOptions): AsyncGenerator<WatchEvent>
  }
  logs: {
    post(line: LogInput): Promise<Warned<{ seq: number }>>
    query(filter: {
      runid?: string
      driver?: string
      pipeline?: string
      after?: number
      limit?: number
    }): Promise<LogLine[]>
    /** A pipeline run's lines (`{runid}`) or one driver's (`{driver, runid}`): stored, then live, then the end. */
    follow(run: { runid: string; driver?: string }, options?: FollowOptions): AsyncGenerator<LogStreamItem>
  }
  drivers: {
    list(): Promise<RegisteredDriver[]>
    identity(name: string, request?: { resources?: readonly string[]; ackWaitMs?: number }): Promise<DriverIdentity>
  }
  replays: {
    create(request: ReplayRequest): Promise<Warned<ReplayProgress>>
    list(): Promise<ReplayProgress[]>
    get(id: string): Promise<ReplayProgress>
    cancel(id: string): Promise<ReplayProgress>
  }
  tokens: {
    create(request: TokenCreateRequest): Promise<CreatedToken>
    list(): Promise<TokenInfo[]>
    revoke(id: string): Promise<{ id: string; revoked: boolean }>
  }
}

type RouteName = keyof typeof CLIENT_ROUTES

/** A client for the gateway at `url`, authenticated with `token`. */
export function createClient(options: ClientOptions): ConveyorClient {
  const transport = new Transport(options)
  const call = async <T>(
    route: RouteName,
    params: Readonly<Record<string, string | number>> = {},
    request: {
      query?: Record<string, string | number | boolean | undefined>
      body?: unknown
      headers?: Record<string, string>
      signal?: AbortSignal
    } = {},
  ): Promise<Answer<T>> => {
    const [method, pattern] = CLIENT_ROUTES[route].split(' ') as [string, string]
    return await transport.request<T>(method, fillPath(pattern, params), request)
  }
  const body = async <T>(answer: Promise<Answer<T>>): Promise<T> => (await answer).body
  const conditional = (options: WriteOptions | undefined) => ({
    ...(options?.ifMatch !== undefined ? { headers: { 'if-match': `"${options.ifMatch}"` } } : {}),
    ...(options?.signal ? { signal: options.signal } : {}),
  })

  const resources: ConveyorClient['resources'] = {
    list: (type, query = {}) =>
      body(
        call<List<Resource>>(
          'listResources',
          { type },
          { query: { labelSelector: query.labelSelector, limit: query.limit, continue: query.continue } },
        ),
      ),
    async *all(type, query = {}) {
      let next: string | undefined
      do {
        const page = await resources.list(type, { ...query, ...(next ? { continue: next } : {}) })
        yield* page.items
        next = page.continue
      } while (next)
    },
    get: (type, name, query = {}) =>
      body(call<Resource>('getResource', { type, name }, { query: { atRevision: query.atRevision } })),
    create: (input) => body(call<Resource>('createResource', {}, { body: input })),
    update: (type, name, input, options) =>
      body(call<Resource>('updateResource', { type, name }, { body: input, ...conditional(options) })),
    delete: (type, name, options) => body(call<Resource>('deleteResource', { type, name }, conditional(options))),
    versions: async (type, name) => (await body(call<{ items: number[] }>('versions', { type, name }))).items,
    version: (type, name, version) => body(call<Resource>('version', { type, name, version })),
    send: (type, name, event) => body(call<EventResult>('sendEvent', { type, name }, { body: event })),
    actor: (type, name) => body(call<ActorView>('actor', { type, name })),
    parked: async (type, name) => (await body(call<{ items: ParkedEvent[] }>('parked', { type, name }))).items,
    resume: (type, name) => body(call<{ resent: number }>('resume', { type, name })),
    verify: (type, name) => body(call<VerifyResult>('verify', { type, name })),
    history: (type, name, query = {}) =>
      body(
        call<HistoryPage>(
          'history',
          { type, name },
          { query: { after: query.after, limit: query.limit, kind: query.kind?.join(',') } },
        ),
      ),
    watch: (type, watchOptions) => watchResources(transport, type, watchOptions),
  }

  return {
    url: transport.baseUrl,
    health: () => body(call<{ status: string }>('health')),
    ready: () => body(call<Readiness>('ready')),
    openapi: () => body(call<Record<string, unknown>>('openapi')),
    metrics: async () => {
      const [method, path] = CLIENT_ROUTES.metrics.split(' ') as [string, string]
      return await (await transport.open(method, path)).text()
    },
    definitions: {
      list: async () => (await body(call<List<ResourceDefinition>>('listDefinitions'))).items,
      get: (name) => body(call<ResourceDefinition>('getDefinition', { name })),
      create: (input) => body(call<ResourceDefinition>('createDefinition', {}, { body: input })),
      apply: async (input) => {
        const answer = await call<ResourceDefinition>('applyDefinition', {}, { body: input })
        return { definition: answer.body, created: answer.status === 201 }
      },
      update: (name, input, options) =>
        body(call<ResourceDefinition>('updateDefinition', { name }, { body: input, ...conditional(options) })),
      delete: (name, options) => body(call<ResourceDefinition>('deleteDefinition', { name }, conditional(options))),
    },
    pipelines: {
      list: async () => (await body(call<List<Pipeline>>('listPipelines'))).items,
      get: (name) => body(call<Pipeline>('getPipeline', { name })),
      create: (input) => body(call<Warned<Pipeline>>('createPipeline', {}, { body: input })),
      update: (name, input, options) =>
        body(call<Warned<Pipeline>>('updatePipeline', { name }, { body: input, ...conditional(options) })),
      delete: (name, options) => body(call<Pipeline>('deletePipeline', { name }, conditional(options))),
    },
    resources,
    logs: {
      post: (line) => body(call<Warned<{ seq: number }>>('postLog', {}, { body: line })),
      query: (filter) => body(call<LogLine[]>('queryLogs', {}, { query: { ...filter } })),
      follow: (run, followOptions) => {
        const [, pattern] = CLIENT_ROUTES[run.driver ? 'driverLogStream' : 'pipelineLogStream'].split(' ') as [
          string,
          string,
        ]
        return followLog(
          transport,
          fillPath(pattern, { runid: run.runid, ...(run.driver ? { driver: run.driver } : {}) }),
          followOptions,
        )
      },
    },
    drivers: {
      list: async () => (await body(call<List<RegisteredDriver>>('listDrivers'))).items,
      identity: (name, request = {}) => body(call<DriverIdentity>('driverIdentity', { name }, { body: request })),
    },
    replays: {
      create: (request) => body(call<Warned<ReplayProgress>>('createReplay', {}, { body: request })),
      list: async () => (await body(call<List<ReplayProgress>>('listReplays'))).items,
      get: (id) => body(call<ReplayProgress>('getReplay', { id })),
      cancel: (id) => body(call<ReplayProgress>('cancelReplay', { id })),
    },
    tokens: {
      create: (request) => body(call<CreatedToken>('createToken', {}, { body: request })),
      list: async () => (await body(call<List<TokenInfo>>('listTokens'))).items,
      revoke: (id) => body(call<{ id: string; revoked: boolean }>('revokeToken', { id })),
    },
  }
}
