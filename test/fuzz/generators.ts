import fc from 'fast-check'
import type { FuzzState } from './fuzz-state.ts'
import { fillPattern, type RouteTemplate } from './templates.ts'
import type { FuzzCase, HttpCase } from './cases.ts'
import { bodyPlan, renderBody } from './bodies.ts'
import {
  authorization,
  contentType,
  encodePair,
  extraHeaders,
  host,
  hostileSegment,
  origin,
  QUERY_KEYS,
  queryValue,
  RAW_QUERY,
} from './request-parts.ts'
import { hostileKey } from './hostile-values.ts'
import { wsCase } from './ws-requests.ts'
import { rawCase } from './raw-requests.ts'

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'get']

/** How a path's shape is bent: as is, a trailing slash, an extra or missing segment, doubled slashes. */
const pathShape = fc.oneof(
  { weight: 90, arbitrary: fc.constant((path: string) => path) },
  {
    weight: 10,
    arbitrary: fc.constantFrom(
      (path: string) => `${path}/`,
      (path: string) => `${path}/extra`,
      (path: string) => path.replace(/\/[^/]*$/, '') || '/',
      (path: string) => `/${path}`,
      (path: string) => path.replace(/\//g, '//'),
      (path: string) => `${path}/..`,
      (path: string) => `/x/..${path}`,
      (path: string) => `${path}#frag`,
    ),
  },
)

const segments = (template: RouteTemplate): fc.Arbitrary<Record<string, string>> =>
  fc.record(
    Object.fromEntries(
      Object.entries(template.params).map(([name, values]) => [
        name,
        fc.oneof({ weight: 7, arbitrary: fc.constantFrom(...values) }, { weight: 3, arbitrary: hostileSegment }),
      ]),
    ),
  )

const queryOf = (template: RouteTemplate): fc.Arbitrary<string> =>
  fc
    .tuple(
      fc.subarray([...template.query]),
      fc.array(fc.tuple(fc.oneof(fc.constantFrom(...QUERY_KEYS), hostileKey), queryValue), { maxLength: 3 }),
      fc.option(fc.constantFrom(...RAW_QUERY), { freq: 8 }),
    )
    .map(([kept, extra, raw]) => {
      const parts = [...kept.map(encodePair), ...extra.map(encodePair), ...(raw ? [raw] : [])]
      return parts.length > 0 ? `?${parts.join('&')}` : ''
    })

function httpCase(state: FuzzState, template: RouteTemplate): fc.Arbitrary<HttpCase> {
  const hasBody = template.bodies.length > 0
  return fc
    .record({
      method: fc.oneof(
        { weight: 92, arbitrary: fc.constant(template.method) },
        { weight: 8, arbitrary: fc.constantFrom(...METHODS) },
      ),
      segments: segments(template),
      shape: pathShape,
      query: queryOf(template),
      authorization: authorization(state),
      host: host(state),
      origin: origin(state),
      contentType,
      routeHeaders: fc.record(
        Object.fromEntries(
          Object.entries(template.headers ?? {}).map(([name, values]) => [
            name,
            fc.option(fc.constantFrom(...values), { freq: 2 }),
          ]),
        ),
      ),
      extra: extraHeaders,
      body: hasBody ? fc.constantFrom(...template.bodies) : fc.constant(undefined),
      plan: bodyPlan(hasBody),
    })
    .map((c) => {
      const headers: Record<string, string> = { host: c.host }
      if (c.authorization !== undefined) headers.authorization = c.authorization
      if (c.origin !== undefined) headers.origin = c.origin
      const body = renderBody(c.plan, c.body)
      if (body !== undefined && c.contentType !== undefined) headers['content-type'] = c.contentType
      for (const [name, value] of Object.entries(c.routeHeaders)) if (value) headers[name] = value as string
      for (const [name, value] of c.extra) headers[name] = value
      const path = c.shape(fillPattern(template.pattern, c.segments)) + c.query
      return {
        kind: 'http' as const,
        route: template.route,
        method: c.method,
        path,
        headers,
        ...(body ? { body } : {}),
      }
    })
}

/** The whole mix: mostly mutated HTTP requests of every route, then WebSockets and raw TCP. */
export function fuzzCase(state: FuzzState, templates: readonly RouteTemplate[]): fc.Arbitrary<FuzzCase> {
  return fc.oneof(
    { weight: 88, arbitrary: fc.constantFrom(...templates).chain((template) => httpCase(state, template)) },
    { weight: 7, arbitrary: wsCase(state) },
    { weight: 5, arbitrary: rawCase(state, templates) },
  )
}

/** The case number `index` of a run: each is generated from its own seed, so one can be replayed alone. */
export function generateCase(arbitrary: fc.Arbitrary<FuzzCase>, seed: number, index: number): FuzzCase {
  return fc.sample(arbitrary, { seed: (seed + Math.imul(index, 0x9e3779b1)) | 0, numRuns: 1 })[0]!
}
