import fc from 'fast-check'
import { FUZZ_DRIVER, STABLE, type FuzzState } from './fuzz-state.ts'
import { hostileString } from './hostile-values.ts'
import type { WsCase } from './cases.ts'
import { applyEdits, edit } from './bodies.ts'
import { host, hostileSegment, origin } from './request-parts.ts'

/** A JSON `/ws` request, valid, mutated, or not JSON at all. */
function wsFrame(state: FuzzState): fc.Arbitrary<string | Buffer> {
  const ops = [
    { op: 'watch', id: 'w1', type: STABLE.svc, labelSelector: 'tier=fuzz' },
    { op: 'watch', id: 'w2', type: STABLE.counter, fromRevision: 1 },
    { op: 'watch', id: 'w3', type: STABLE.job },
    { op: 'logs', id: 'l1', runid: state.runid, driver: FUZZ_DRIVER, after: 0 },
    { op: 'logs', id: 'l2', runid: state.runid },
    { op: 'replay', id: 'r1', replay: state.replayId },
    { op: 'unsubscribe', id: 'w1' },
  ]
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...ops).map((op) => JSON.stringify(op)) },
    {
      weight: 6,
      arbitrary: fc
        .tuple(fc.constantFrom(...ops), fc.array(edit, { minLength: 1, maxLength: 2 }))
        .map(([op, edits]) => JSON.stringify(applyEdits(op, edits)) ?? 'null'),
    },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)) },
    { weight: 2, arbitrary: hostileString.filter((s) => s.length < 20_000) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(17_000, 70_000).map((n) => JSON.stringify({ op: 'watch', id: 'x'.repeat(n) })),
    },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 60, max: 5000 })
        .map((d) => `{"op":"watch","id":"deep","type":${'{"a":'.repeat(d)}1${'}'.repeat(d)}}`),
    },
  )
}

export function wsCase(state: FuzzState): fc.Arbitrary<WsCase> {
  const bearer = (token: string) => `conveyor.bearer.${token}`
  return fc
    .record({
      target: fc.oneof(
        { weight: 6, arbitrary: fc.constant({ route: 'GET /ws', path: '/ws' }) },
        {
          weight: 2,
          arbitrary: fc.constant({
            route: 'GET /logs/streams/:driver/:runid',
            path: `/logs/streams/${FUZZ_DRIVER}/${state.runid}`,
          }),
        },
        {
          weight: 1,
          arbitrary: fc.constant({ route: 'GET /logs/pipeline/:runid', path: `/logs/pipeline/${state.runid}` }),
        },
        {
          weight: 1,
          arbitrary: hostileSegment.map((segment) => ({
            route: 'GET /logs/streams/:driver/:runid',
            path: `/logs/streams/${FUZZ_DRIVER}/${segment}`,
          })),
        },
      ),
      query: fc.constantFrom('', '', '?after=0', '?after=-1', '?after=abc', '?after=99999999999999999999'),
      protocols: fc.oneof(
        { weight: 8, arbitrary: fc.constant(['conveyor.v1', bearer(state.admin)]) },
        {
          weight: 4,
          arbitrary: fc.constantFrom(
            [bearer(state.admin)],
            [],
            ['conveyor.v1'],
            [bearer('garbage')],
            [bearer(state.viewer)],
            [bearer(state.limited)],
            ['conveyor.v1', bearer(`cvt_0000000000000000_${'A'.repeat(43)}`)],
          ),
        },
      ),
      host: host(state),
      origin: origin(state),
      frames: fc.array(wsFrame(state), { minLength: 1, maxLength: 6 }),
    })
    .map((c) => ({
      kind: 'ws' as const,
      route: c.target.route,
      path: c.target.path + c.query,
      protocols: c.protocols,
      headers: { host: c.host, ...(c.origin ? { origin: c.origin } : {}) },
      frames: c.frames,
    }))
}
