import { COUNTER_LIFECYCLE, FUZZ_DRIVER, STABLE, type FuzzState } from './fuzz-state.ts'

/** A valid request of one route, which the generators mutate. */
export interface RouteTemplate {
  /** `METHOD /pattern`, as `routePolicies` names it. */
  readonly route: string
  readonly method: string
  readonly pattern: string
  /** Valid values of each `:param`, by name. */
  readonly params: Readonly<Record<string, readonly string[]>>
  /** Valid query parameters. */
  readonly query: readonly (readonly [string, string])[]
  /** Valid bodies (none: the route takes none). */
  readonly bodies: readonly unknown[]
  /** A header the route reads, with valid values. */
  readonly headers?: Readonly<Record<string, readonly string[]>>
}

/** Names of throw-away objects: writes go to them, so the seeded ones stay mostly intact. */
const scratch = (prefix: string): string[] => [0, 1, 2, 3].map((i) => `${prefix}-${i}`)
const scratchDefinitions = scratch('fz-def')
const scratchPipelines = scratch('fz-pipe')
const scratchResources = scratch('fz-res')

const definitionBody = (name: string) => ({
  name,
  version: '1',
  description: 'a fuzzed definition',
  schema: { type: 'object', properties: { x: { type: 'string', maxLength: 64 }, n: { type: 'integer' } } },
  lifecycle: { ...COUNTER_LIFECYCLE, id: name },
  labels: { tier: 'fuzz' },
})

const pipelineBody = (name: string) => ({
  name,
  resource: STABLE.job,
  description: 'a fuzzed pipeline',
  steps: [
    { id: 'one', name: 'One', driver: FUZZ_DRIVER, timeout: '30s', retries: 1, backoff: '1s' },
    { id: 'two', driver: FUZZ_DRIVER, needs: ['one'], redispatchAfter: '5m' },
  ],
  labels: { tier: 'fuzz' },
})

const resourceBody = (name: string, type: string = STABLE.svc) => ({
  name,
  resource: type,
  labels: { app: name, tier: 'fuzz' },
  spec: type === STABLE.svc ? { replicas: 2 } : { ref: 'feature/x' },
  ...(type === STABLE.job ? { pipeline: STABLE.pipeline } : {}),
})

const IF_MATCH = ['*', '"1"', 'W/"2"', '3']

/** A valid request of every route the gateway has (the keys of `routePolicies`). */
export function routeTemplates(state: FuzzState): RouteTemplate[] {
  const stableTypes = [STABLE.job, STABLE.counter, STABLE.svc]
  const stableNames = [...STABLE.jobs, ...STABLE.counters, ...STABLE.services]
  const resourceParams = { type: stableTypes, name: stableNames }
  const t = (route: string, rest: Partial<Omit<RouteTemplate, 'route' | 'method' | 'pattern'>> = {}): RouteTemplate => {
    const [method, pattern] = route.split(' ') as [string, string]
    return { route, method, pattern, params: {}, query: [], bodies: [], ...rest }
  }
  return [
    t('GET /health'),
    t('GET /ready'),
    t('GET /openapi.json'),
    t('GET /docs'),
    t('GET /docs/:asset', { params: { asset: ['swagger-ui.css', 'docs.js', 'nosuch.js'] } }),

    t('POST /resource-definitions', { bodies: scratchDefinitions.map(definitionBody) }),
    t('POST /resource-definitions/apply', { bodies: scratchDefinitions.map(definitionBody) }),
    t('GET /resource-definitions'),
    t('GET /resource-definitions/:name', { params: { name: [...stableTypes, ...scratchDefinitions] } }),
    t('PUT /resource-definitions/:name', {
      params: { name: scratchDefinitions },
      bodies: scratchDefinitions.map(definitionBody),
      headers: { 'if-match': IF_MATCH },
    }),
    t('DELETE /resource-definitions/:name', {
      params: { name: scratchDefinitions },
      headers: { 'if-match': IF_MATCH },
    }),

    t('POST /pipelines', { bodies: scratchPipelines.map(pipelineBody) }),
    t('GET /pipelines'),
    t('GET /pipelines/:name', { params: { name: [STABLE.pipeline, ...scratchPipelines] } }),
    t('PUT /pipelines/:name', {
      params: { name: scratchPipelines },
      bodies: scratchPipelines.map(pipelineBody),
      headers: { 'if-match': IF_MATCH },
    }),
    t('DELETE /pipelines/:name', { params: { name: scratchPipelines }, headers: { 'if-match': IF_MATCH } }),

    t('POST /resources', {
      bodies: [...scratchResources.map((n) => resourceBody(n)), resourceBody('fz-job-run', STABLE.job)],
    }),
    t('GET /resources'),
    t('GET /resources/:type', {
      params: { type: stableTypes },
      query: [
        ['limit', '2'],
        ['labelSelector', 'tier=fuzz,!gone'],
      ],
    }),
    t('GET /resources/:type/:name', { params: resourceParams, query: [['atRevision', '5']] }),
    t('PUT /resources/:type/:name', {
      params: { type: [STABLE.svc], name: [...scratchResources, ...STABLE.services] },
      bodies: [{ labels: { app: 'fuzz' }, spec: { replicas: 3 } }],
      headers: { 'if-match': IF_MATCH },
    }),
    t('DELETE /resources/:type/:name', { params: { type: [STABLE.svc], name: scratchResources } }),
    t('GET /resources/:type/:name/versions', { params: resourceParams }),
    t('GET /resources/:type/:name/:version', { params: { ...resourceParams, version: ['1', '2'] } }),
    t('POST /resources/:type/:name/events', {
      params: { type: [STABLE.counter], name: [...STABLE.counters] },
      bodies: [
        { type: 'INC' },
        { type: 'INC', id: 'fuzz-event-1', note: 'payload' },
        { type: 'PAUSE' },
        { type: 'RESUME' },
      ],
    }),
    t('GET /resources/:type/:name/actor', { params: resourceParams }),
    t('GET /resources/:type/:name/actor/parked', { params: resourceParams }),
    t('POST /resources/:type/:name/actor/resume', { params: resourceParams, bodies: [{}] }),
    t('GET /resources/:type/:name/verify', { params: resourceParams }),
    t('GET /resources/:type/:name/history', {
      params: resourceParams,
      query: [
        ['limit', '10'],
        ['after', '1'],
        ['kind', 'transitioned,created'],
      ],
    }),

    t('POST /logs', {
      bodies: [{ driver: FUZZ_DRIVER, runid: state.runid, message: 'a fuzzed line', stream: 'stdout' }],
    }),
    t('GET /logs', {
      query: [
        ['runid', state.runid],
        ['driver', FUZZ_DRIVER],
        ['limit', '50'],
      ],
    }),
    t('GET /logs/streams/:driver/:runid', {
      params: { driver: [FUZZ_DRIVER], runid: [state.runid] },
      query: [['after', '0']],
      headers: { 'last-event-id': ['0', '1'] },
    }),
    t('GET /logs/pipeline/:runid', { params: { runid: [state.runid] }, headers: { 'last-event-id': ['0'] } }),

    t('GET /drivers'),
    t('POST /drivers/:name/identity', { params: { name: [FUZZ_DRIVER] }, bodies: [{ resources: [STABLE.svc] }] }),

    t('POST /replay', { bodies: [{ driver: FUZZ_DRIVER, type: STABLE.svc, resource: 's1', fromSequence: 1 }] }),
    t('GET /replay'),
    t('GET /replay/:id', { params: { id: [state.replayId] } }),
    t('DELETE /replay/:id', { params: { id: [state.replayId] } }),

    t('POST /tokens', { bodies: [{ role: 'viewer', types: [STABLE.svc], description: 'fuzzed', expiresIn: '1h' }] }),
    t('GET /tokens'),
    t('DELETE /tokens/:id', { params: { id: state.scratchTokenIds } }),
  ]
}

/** Routes served as streams (SSE on GET, WebSocket on an upgrade) rather than by the router. */
export const STREAM_ROUTES = new Set(['GET /logs/streams/:driver/:runid', 'GET /logs/pipeline/:runid'])

/** Fills a pattern's `:params` with (already encoded) path segments. */
export function fillPattern(pattern: string, segments: Readonly<Record<string, string>>): string {
  return pattern.replace(/:([a-z]+)/g, (_, name: string) => segments[name] ?? name)
}
