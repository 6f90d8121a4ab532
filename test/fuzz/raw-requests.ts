import fc from 'fast-check'
import type { FuzzState } from './fuzz-state.ts'
import { fillPattern, type RouteTemplate } from './templates.ts'
import type { RawCase } from './cases.ts'

/** Requests no HTTP library sends: a body that never ends, chunked, smuggling headers, broken request lines. */
export function rawCase(state: FuzzState, templates: readonly RouteTemplate[]): fc.Arbitrary<RawCase> {
  const writes = templates.filter((t) => t.bodies.length > 0)
  const hostLine = `Host: 127.0.0.1:${state.port}\r\n`
  const auth = `Authorization: Bearer ${state.admin}\r\n`
  return fc
    .record({
      template: fc.constantFrom(...writes),
      variant: fc.constantFrom(
        'abandon',
        'chunked',
        'bad-chunk',
        'cl-and-te',
        'two-lengths',
        'negative-length',
        'pipelined',
        'expect-continue',
        'bad-request-line',
        'bare-lf',
        'raw-bytes-path',
        'huge-header',
        'http10',
        'garbage',
        'nul-header',
      ),
      garbage: fc.uint8Array({ minLength: 1, maxLength: 300 }),
      cut: fc.double({ min: 0.05, max: 0.95, noNaN: true }),
    })
    .map(({ template, variant, garbage, cut }) => {
      const path = fillPattern(
        template.pattern,
        Object.fromEntries(Object.entries(template.params).map(([k, v]) => [k, v[0]!])),
      )
      const body = Buffer.from(JSON.stringify(template.bodies[0]))
      const head = (extra: string, line = `${template.method} ${path} HTTP/1.1`) =>
        Buffer.from(`${line}\r\n${hostLine}${auth}Content-Type: application/json\r\n${extra}\r\n`)
      const base = { kind: 'raw' as const, route: template.route, variant }
      const half = body.subarray(0, Math.max(1, Math.floor(body.length * cut)))
      switch (variant) {
        case 'abandon':
          return {
            ...base,
            bytes: Buffer.concat([head(`Content-Length: ${body.length}\r\n`), half]),
            abandonAfterMs: 300,
          }
        case 'chunked': {
          const rest = body.subarray(half.length)
          const chunk = (b: Buffer) =>
            Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')])
          return {
            ...base,
            bytes: Buffer.concat([
              head('Transfer-Encoding: chunked\r\n'),
              chunk(half),
              chunk(rest),
              Buffer.from('0\r\n\r\n'),
            ]),
          }
        }
        case 'bad-chunk':
          return {
            ...base,
            bytes: Buffer.concat([
              head('Transfer-Encoding: chunked\r\n'),
              Buffer.from('zz\r\n'),
              body,
              Buffer.from('\r\n0\r\n\r\n'),
            ]),
          }
        case 'cl-and-te':
          return {
            ...base,
            bytes: Buffer.concat([
              head(`Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n`),
              Buffer.from(`${body.length.toString(16)}\r\n`),
              body,
              Buffer.from('\r\n0\r\n\r\n'),
            ]),
          }
        case 'two-lengths':
          return {
            ...base,
            bytes: Buffer.concat([head(`Content-Length: ${body.length}\r\nContent-Length: 3\r\n`), body]),
          }
        case 'negative-length':
          return { ...base, bytes: Buffer.concat([head('Content-Length: -5\r\n'), body]) }
        case 'pipelined':
          return {
            ...base,
            bytes: Buffer.concat([
              head(`Content-Length: ${body.length}\r\n`),
              body,
              Buffer.from(`GET /health HTTP/1.1\r\n${hostLine}\r\n`),
            ]),
          }
        case 'expect-continue':
          return {
            ...base,
            bytes: Buffer.concat([head(`Content-Length: ${body.length}\r\nExpect: 100-continue\r\n`), body]),
          }
        case 'bad-request-line':
          return { ...base, bytes: head(`Content-Length: 0\r\n`, `${template.method}  ${path}  HTTP/1.1 extra`) }
        case 'bare-lf':
          return {
            ...base,
            bytes: Buffer.from(
              `${template.method} ${path} HTTP/1.1\n${hostLine.trim()}\n${auth.trim()}\nContent-Type: application/json\nContent-Length: ${body.length}\n\n${body.toString()}`,
            ),
          }
        case 'raw-bytes-path':
          return {
            ...base,
            bytes: Buffer.concat([
              Buffer.from(`GET /resources/`),
              Buffer.from([0xed, 0xa0, 0x80, 0xff, 0x00, 0x20]),
              Buffer.from(` HTTP/1.1\r\n${hostLine}${auth}\r\n`),
            ]),
          }
        case 'huge-header':
          return { ...base, bytes: head(`X-Big: ${'b'.repeat(20_000)}\r\nContent-Length: 0\r\n`) }
        case 'http10':
          return {
            ...base,
            bytes: Buffer.concat([
              head(`Content-Length: ${body.length}\r\n`, `${template.method} ${path} HTTP/1.0`),
              body,
            ]),
          }
        case 'nul-header':
          return {
            ...base,
            bytes: Buffer.concat([head(`X-Nul: a\u0000b\r\nContent-Length: ${body.length}\r\n`), body]),
          }
        default:
          return { ...base, bytes: Buffer.from(garbage) }
      }
    })
}
