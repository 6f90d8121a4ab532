import Type, { type TSchema } from 'typebox'
import { DefinitionInput, LogInput, ResourceInput } from '../definitions/api-types.ts'
import { PipelineInput } from '../definitions/pipeline.ts'
import { ReplayInput } from './routes/replay.ts'
import {
  Described,
  ListOf,
  ObjectMetadata,
  Pipeline,
  Problem,
  Resource,
  ResourceDefinition,
} from './openapi-schemas.ts'

/** What the OpenAPI document says of one route beyond what the router knows (its method, path and parameters). */
export interface RouteDoc {
  readonly summary: string
  readonly tag: string
  readonly body?: TSchema
  readonly query?: Readonly<Record<string, { readonly schema: TSchema; readonly description: string }>>
  /** The success answer: status and schema (`text` for a non-JSON body: its media type). */
  readonly ok: {
    readonly status: number
    readonly schema: TSchema
    readonly text?: string
    readonly description?: string
  }
  /** Further answers this route gives besides the common problems. */
  readonly also?: readonly number[]
  /** Answers without a token. */
  readonly public?: boolean
}

const int = (description: string): { schema: TSchema; description: string } => ({
  schema: Type.Integer({ minimum: 1 }),
  description,
})
const text = (description: string): { schema: TSchema; description: string } => ({ schema: Type.String(), description })
const Ref = (name: string): TSchema => ({ $ref: `#/components/schemas/${name}` }) as unknown as TSchema
const Event = Type.Object(
  { type: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,128}$' }), id: Type.Optional(Type.String()) },
  { additionalProperties: true, description: '{type, id?, ...payload}' },
)
const TokenRequest = Type.Object(
  {
    role: Type.Union([Type.Literal('admin'), Type.Literal('operator'), Type.Literal('viewer'), Type.Literal('driver')]),
    types: Type.Optional(Type.Array(Type.String())),
    driver: Type.Optional(Type.String()),
    description: Type.Optional(Type.String({ maxLength: 200 })),
    expiresIn: Type.Optional(Type.Union([Type.String(), Type.Integer({ minimum: 1 })])),
  },
  { additionalProperties: false },
)
const IdentityRequest = Type.Object(
  { resources: Type.Optional(Type.Array(Type.String())), ackWaitMs: Type.Optional(Type.Integer({ minimum: 1 })) },
  { additionalProperties: false },
)

/** Every route the router serves, documented; a test fails when one is missing. */
export const ROUTE_DOCS: Readonly<Record<string, RouteDoc>> = {
  'GET /health': {
    summary: 'The process is up',
    tag: 'health',
    public: true,
    ok: { status: 200, schema: Described('{status}') },
  },
  'GET /ready': {
    summary: 'etcd and NATS reachable and taking writes (detail with a token)',
    tag: 'health',
    public: true,
    ok: { status: 200, schema: Described('{status, etcd?, nats?, etcdSpace?, streams?}') },
  },
  'GET /metrics': {
    summary: 'Prometheus metrics of this gateway',
    tag: 'health',
    ok: { status: 200, schema: Type.String(), text: 'text/plain; version=0.0.4' },
  },
  'GET /openapi.json': {
    summary: 'This document',
    tag: 'health',
    ok: { status: 200, schema: Described('OpenAPI 3.1') },
  },
  'GET /docs': {
    summary: 'This API reference, as a page (it asks for a token to read the document)',
    tag: 'health',
    public: true,
    ok: { status: 200, schema: Type.String(), text: 'text/html' },
  },
  'GET /docs/:asset': {
    summary: "The page's static files (Swagger UI, from its package)",
    tag: 'health',
    public: true,
    ok: { status: 200, schema: Type.String(), text: 'text/javascript' },
  },
  'POST /resource-definitions': {
    summary: 'Create a resource definition (a JSON Schema for spec and an optional lifecycle machine)',
    tag: 'definitions',
    body: DefinitionInput,
    ok: { status: 201, schema: Ref('ResourceDefinition') },
  },
  'POST /resource-definitions/apply': {
    summary: 'Create (201) or replace (200) a resource definition',
    tag: 'definitions',
    body: DefinitionInput,
    ok: { status: 200, schema: Ref('ResourceDefinition') },
    also: [201],
  },
  'GET /resource-definitions': {
    summary: 'List resource definitions',
    tag: 'definitions',
    ok: { status: 200, schema: ListOf(Ref('ResourceDefinition')) },
  },
  'GET /resource-definitions/:name': {
    summary: 'Get a resource definition (ETag: its revision)',
    tag: 'definitions',
    ok: { status: 200, schema: Ref('ResourceDefinition') },
  },
  'PUT /resource-definitions/:name': {
    summary: 'Replace a resource definition (If-Match or metadata.revision make it conditional)',
    tag: 'definitions',
    body: DefinitionInput,
    ok: { status: 200, schema: Ref('ResourceDefinition') },
  },
  'DELETE /resource-definitions/:name': {
    summary: 'Delete a resource definition (409 while resources of the type exist)',
    tag: 'definitions',
    ok: { status: 200, schema: Ref('ResourceDefinition') },
  },
  'POST /pipelines': {
    summary: 'Create a pipeline (a driver never seen is a warning)',
    tag: 'pipelines',
    body: PipelineInput,
    ok: { status: 201, schema: Ref('Pipeline') },
  },
  'GET /pipelines': {
    summary: 'List pipelines',
    tag: 'pipelines',
    ok: { status: 200, schema: ListOf(Ref('Pipeline')) },
  },
  'GET /pipelines/:name': { summary: 'Get a pipeline', tag: 'pipelines', ok: { status: 200, schema: Ref('Pipeline') } },
  'PUT /pipelines/:name': {
    summary: 'Replace a pipeline',
    tag: 'pipelines',
    body: PipelineInput,
    ok: { status: 200, schema: Ref('Pipeline') },
  },
  'DELETE /pipelines/:name': {
    summary: 'Delete a pipeline',
    tag: 'pipelines',
    ok: { status: 200, schema: Ref('Pipeline') },
  },
  'POST /resources': {
    summary: 'Create a resource (its run starts when it names a pipeline)',
    tag: 'resources',
    body: ResourceInput,
    ok: { status: 201, schema: Ref('Resource') },
  },
  'GET /resources': {
    summary: 'Refused: a resource type is required (GET /resources/:type)',
    tag: 'resources',
    ok: { status: 400, schema: Ref('Problem') },
  },
  'GET /resources/:type': {
    summary: 'List the resources of a type, paged',
    tag: 'resources',
    query: {
      labelSelector: text('a=b,c!=d,e,!f'),
      limit: int('items per page (default 500)'),
      continue: text('the continue token of the previous page'),
    },
    ok: { status: 200, schema: ListOf(Ref('Resource')) },
  },
  'GET /resources/:type/:name': {
    summary: 'Get a resource with its actor status; ?atRevision=N for the resource as it was then',
    tag: 'resources',
    query: { atRevision: int('an etcd revision (time travel)') },
    ok: { status: 200, schema: Ref('Resource') },
    also: [410],
  },
  'PUT /resources/:type/:name': {
    summary: 'Update a resource (the object as GET returned it, edited)',
    tag: 'resources',
    body: ResourceInput,
    ok: { status: 200, schema: Ref('Resource') },
  },
  'DELETE /resources/:type/:name': {
    summary: 'Delete a resource',
    tag: 'resources',
    ok: { status: 200, schema: Ref('Resource') },
  },
  'GET /resources/:type/:name/versions': {
    summary: 'The kept version numbers',
    tag: 'resources',
    ok: { status: 200, schema: Type.Object({ items: Type.Array(Type.Integer()) }) },
  },
  'GET /resources/:type/:name/:version': {
    summary: 'An earlier version',
    tag: 'resources',
    ok: { status: 200, schema: Ref('Resource') },
    also: [410],
  },
  'POST /resources/:type/:name/events': {
    summary: "Send an event to the resource's actor",
    tag: 'actors',
    body: Event,
    ok: { status: 200, schema: Described('{from, to, state, context, done, revision, seq}') },
    also: [202],
  },
  'GET /resources/:type/:name/actor': {
    summary: 'Inspect the actor: state, accepted events, timers, machine and a Mermaid diagram',
    tag: 'actors',
    ok: {
      status: 200,
      schema: Described('{state, value, status, context, accepts, timers, seq, revision, lifecycle, mermaid}'),
    },
  },
  'GET /resources/:type/:name/actor/parked': {
    summary: 'Events kept aside because etcd refused their result',
    tag: 'actors',
    ok: { status: 200, schema: Described('{items: [{seq, event, reason, parkedAt}]}') },
  },
  'POST /resources/:type/:name/actor/resume': {
    summary: 'Send the parked events again, in order',
    tag: 'actors',
    ok: { status: 202, schema: Described('{type, name, resent}') },
  },
  'GET /resources/:type/:name/verify': {
    summary: 'Fold the history through the machine and compare with etcd',
    tag: 'history',
    ok: { status: 200, schema: Described('{ok, events, rebuilt, stored, divergence?}') },
  },
  'GET /resources/:type/:name/history': {
    summary: "The resource's events from JetStream, in order",
    tag: 'history',
    query: {
      after: int('events after this sequence'),
      limit: int('at most this many (default 100, at most 1000)'),
      kind: text('kinds, comma separated'),
    },
    ok: { status: 200, schema: Described('{items: [{seq, time, kind, event}], next?}') },
  },
  'POST /logs': {
    summary: "Store a log line (Conveyor's log route; unknown fields are ignored with a warning)",
    tag: 'logs',
    body: LogInput,
    ok: {
      status: 201,
      schema: Type.Object({ seq: Type.Integer(), warnings: Type.Optional(Type.Array(Type.String())) }),
    },
  },
  'GET /logs': {
    summary: 'Stored log lines in order (Conveyor-Next-After names the next page)',
    tag: 'logs',
    query: {
      runid: text('a run'),
      driver: text('a driver'),
      pipeline: text('a pipeline'),
      after: int('lines after this sequence'),
      limit: int('at most this many lines'),
    },
    ok: { status: 200, schema: Type.Array(Described('{runid, driver, step?, message, stream, timestamp, seq}')) },
  },
  'GET /drivers': {
    summary: 'Drivers ever seen, with their live instances',
    tag: 'drivers',
    ok: { status: 200, schema: Described('{items: [{name, resources, lastSeen, instances}]}') },
  },
  'POST /drivers/:name/identity': {
    summary: "A driver's own NATS identity (driver token)",
    tag: 'drivers',
    body: IdentityRequest,
    ok: { status: 200, schema: Described('{user, password, inboxPrefix, consumers, types?, expiresAt?}') },
  },
  'POST /replay': {
    summary: 'Re-deliver a range of history to a driver',
    tag: 'history',
    body: ReplayInput,
    ok: { status: 201, schema: Described('a replay with its progress') },
  },
  'GET /replay': { summary: 'Replays', tag: 'history', ok: { status: 200, schema: Described('{items}') } },
  'GET /replay/:id': {
    summary: 'A replay with its progress',
    tag: 'history',
    ok: { status: 200, schema: Described('{id, delivered, total, status, …}') },
  },
  'DELETE /replay/:id': {
    summary: 'Cancel a replay',
    tag: 'history',
    ok: { status: 200, schema: Described('the cancelled replay') },
  },
  'POST /tokens': {
    summary: 'Make a token (admin); the secret is shown this once',
    tag: 'tokens',
    body: TokenRequest,
    ok: { status: 201, schema: Described('{id, role, types?, driver?, description?, createdAt, expiresAt?, token}') },
  },
  'GET /tokens': {
    summary: 'Every token (never its secret)',
    tag: 'tokens',
    ok: { status: 200, schema: Described('{items}') },
  },
  'DELETE /tokens/:id': {
    summary: 'Revoke a token',
    tag: 'tokens',
    ok: { status: 200, schema: Described('{id, revoked}') },
  },
}

/** Routes served beside the router: log streams (SSE, or WebSocket on upgrade) and the WebSocket API. */
export const STREAM_DOCS: Readonly<Record<string, RouteDoc>> = {
  'GET /logs/streams/:driver/:runid': {
    summary: "A driver's run log: SSE (id = sequence, event: end), or a WebSocket on upgrade",
    tag: 'logs',
    query: { after: int('resume after this sequence (or Last-Event-ID)') },
    ok: { status: 200, schema: Type.String(), text: 'text/event-stream' },
  },
  'GET /logs/pipeline/:runid': {
    summary: "A pipeline run's log: SSE, or a WebSocket on upgrade",
    tag: 'logs',
    query: { after: int('resume after this sequence (or Last-Event-ID)') },
    ok: { status: 200, schema: Type.String(), text: 'text/event-stream' },
  },
  'GET /ws': {
    summary: 'The WebSocket API: watch, logs and replay subscriptions (see the README)',
    tag: 'watch',
    ok: { status: 101, schema: Type.String(), text: 'application/json', description: 'switching protocols' },
  },
}

const PROBLEM_TEXT: Readonly<Record<number, string>> = {
  400: 'invalid input, every failing field named',
  401: 'no valid token',
  403: 'the role, origin or host is not allowed',
  404: 'missing (an unknown resource type too)',
  409: 'exists, stale metadata.revision, in use, or not accepted in the current state',
  410: 'compacted revision or dropped version',
  412: 'stale If-Match',
  413: 'body too large',
  415: 'a write that is not application/json',
  429: 'rate limited (Retry-After)',
  503: 'etcd or NATS unavailable, or a stream full (Retry-After)',
}

const plain = (schema: TSchema): unknown => JSON.parse(JSON.stringify(schema)) as unknown

function operation(method: string, pattern: string, doc: RouteDoc): Record<string, unknown> {
  const params = [...pattern.matchAll(/:([A-Za-z]+)/g)].map(([, name]) => name!)
  const writes = method !== 'GET'
  const statuses = new Set<number>([
    ...(doc.public ? [] : [401, 403, 429]),
    503,
    ...(doc.body || doc.query || params.length > 0 ? [400] : []),
    ...(params.length > 0 ? [404] : []),
    ...(doc.body ? [413, 415] : []),
    ...(writes && params.length > 0 ? [409, 412] : []),
    ...(writes && !params.length ? [409] : []),
    ...(doc.also ?? []).filter((s) => s >= 400),
  ])
  const success = (status: number): [string, unknown] => [
    String(status),
    {
      description: doc.ok.description ?? (status === 202 ? 'accepted, not yet applied' : 'success'),
      content: { [doc.ok.text ?? 'application/json']: { schema: plain(doc.ok.schema) } },
    },
  ]
  return {
    operationId: `${method.toLowerCase()}${pattern.replace(/\/:?([A-Za-z-]+)/g, (_, part: string) => part.replace(/(^|-)([a-z])/g, (_m, _d, c: string) => c.toUpperCase()))}`,
    summary: doc.summary,
    tags: [doc.tag],
    ...(doc.public ? { security: [] } : {}),
    parameters: [
      ...params.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } })),
      ...Object.entries(doc.query ?? {}).map(([name, q]) => ({
        name,
        in: 'query',
        required: false,
        description: q.description,
        schema: plain(q.schema),
      })),
      ...(writes && params.length > 0
        ? [
            {
              name: 'If-Match',
              in: 'header',
              required: false,
              description: 'the revision the object must still be at',
              schema: { type: 'string' },
            },
          ]
        : []),
    ],
    ...(doc.body
      ? { requestBody: { required: true, content: { 'application/json': { schema: plain(doc.body) } } } }
      : {}),
    responses: Object.fromEntries([
      success(doc.ok.status),
      ...(doc.also ?? []).filter((s) => s < 400).map(success),
      ...[...statuses]
        .sort((a, b) => a - b)
        .map((status) => [
          String(status),
          {
            description: PROBLEM_TEXT[status] ?? 'a problem',
            content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
          },
        ]),
    ]),
  }
}

/**
 * The OpenAPI 3.1 document of a gateway, generated from its router's routes and the TypeBox types.
 * A route without a doc is an error: every route is documented.
 */
export function buildOpenApi(routes: readonly string[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {}
  const add = (route: string, doc: RouteDoc | undefined): void => {
    if (!doc) throw new Error(`route ${route} has no OpenAPI doc (gateway/openapi.ts ROUTE_DOCS)`)
    const [method, pattern] = route.split(' ') as [string, string]
    const path = pattern.replace(/:([A-Za-z]+)/g, '{$1}')
    paths[path] = { ...paths[path], [method.toLowerCase()]: operation(method, pattern, doc) }
  }
  for (const route of routes) add(route, ROUTE_DOCS[route])
  for (const [route, doc] of Object.entries(STREAM_DOCS)) add(route, doc)
  return {
    openapi: '3.1.0',
    info: {
      title: 'Conveyor API',
      version,
      description: 'Resource definitions, pipelines and resources; their actors, history, logs and replays.',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    tags: [...new Set(Object.values({ ...ROUTE_DOCS, ...STREAM_DOCS }).map((d) => d.tag))].map((name) => ({ name })),
    paths,
    components: {
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description:
            'A token from conveyor token create (or the admin token conveyor up writes). Browsers open WebSockets with the subprotocols conveyor.v1 and conveyor.bearer.TOKEN.',
        },
      },
      schemas: {
        Problem: plain(Problem),
        ObjectMetadata: plain(ObjectMetadata),
        ResourceDefinition: plain(ResourceDefinition),
        Pipeline: plain(Pipeline),
        Resource: plain(Resource),
      },
    },
  }
}
