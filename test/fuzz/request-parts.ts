import fc from 'fast-check'
import { FUZZ_DRIVER, STABLE, type FuzzState } from './fuzz-state.ts'
import { hostileString } from './hostile-values.ts'
import { encodeComponent } from './cases.ts'

/** Path segments as a client might send them: traversal, bad percent-encoding, too long, wrong case. */
export const hostileSegment: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '..',
      '.',
      '%2e%2e',
      '%2E',
      '%2F',
      'a%2Fb',
      '%00',
      '%',
      '%zz',
      '%E',
      '%ED%A0%80',
      '%C0%AF',
      '%E2%80%AE',
      '%FF',
      'UPPER',
      '-lead',
      'trail-',
      'a--b',
      '%20',
      '~',
      '*',
      'a;b',
      '%3F',
      '%23',
      'a'.repeat(63),
      'a'.repeat(64),
      'a'.repeat(2000),
      'a'.repeat(5000),
      STABLE.job,
      'nonexistent',
      '0',
      '1',
      '-1',
      '99999999999999999999',
      '1e3',
      'deadbeefdead',
      'DEADBEEFDEAD',
      '0123456789abcdef',
    ),
  },
  { weight: 2, arbitrary: hostileString.filter((s) => s.length < 1500).map(encodeComponent) },
)

export const QUERY_KEYS = [
  'limit',
  'after',
  'continue',
  'labelSelector',
  'atRevision',
  'kind',
  'runid',
  'driver',
  'pipeline',
  'fromRevision',
]
export const queryValue: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '1',
      '0',
      '-1',
      '1000',
      '1001',
      '100000',
      '100001',
      'abc',
      '1.5',
      '1e3',
      '9007199254740993',
      '',
      ' 5 ',
      'ZnV6ei1qb2I',
      '____',
      'a=b,,!c',
      'a!=b',
      '!a=b',
      'tier in (x)',
      '(',
      'a==b',
      'transitioned,,created',
      STABLE.svc,
      FUZZ_DRIVER,
    ),
  },
  { weight: 2, arbitrary: hostileString.filter((s) => s.length < 3000) },
)
/** Query fragments sent as they are (not encoded): broken percent-encoding, odd separators. */
export const RAW_QUERY = [
  '%zz=1',
  'limit=%FF',
  '&&&',
  '=',
  'limit',
  'a[b]=c',
  'after=%ED%A0%80',
  'limit=1&limit=2',
  'kind=%00',
]

export const encodePair = ([key, value]: readonly [string, string]): string =>
  `${encodeComponent(key)}=${encodeComponent(value)}`

/** `Authorization` variants: mostly the admin token, some the viewer's or the limited operator's, some garbage or none. */
export function authorization(state: FuzzState): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    { weight: 80, arbitrary: fc.constant(`Bearer ${state.admin}`) },
    { weight: 3, arbitrary: fc.constant(`Bearer ${state.viewer}`) },
    { weight: 3, arbitrary: fc.constant(`Bearer ${state.limited}`) },
    { weight: 4, arbitrary: fc.constant(undefined) },
    {
      weight: 10,
      arbitrary: fc.constantFrom(
        'Bearer',
        'Bearer ',
        `bearer ${state.admin}`,
        `Bearer  ${state.admin}  `,
        'Basic YWRtaW46YWRtaW4=',
        `Bearer ${state.admin.slice(0, -1)}${state.admin.endsWith('A') ? 'B' : 'A'}`,
        `Bearer cvt_0000000000000000_${'A'.repeat(43)}`,
        `Bearer cvt_${'f'.repeat(16)}_short`,
        `Bearer ${'x'.repeat(3000)}`,
        `Bearer ${state.admin} extra`,
        'Bearer \u00ff\u00fe',
        `Token ${state.admin}`,
      ),
    },
  )
}

/** `Host` stays a loopback name almost always (else the guard's 403 is all that is tested). */
export function host(state: FuzzState): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 90, arbitrary: fc.constant(`127.0.0.1:${state.port}`) },
    {
      weight: 9,
      arbitrary: fc.constantFrom(
        'localhost',
        `localhost:${state.port}`,
        `[::1]:${state.port}`,
        'fuzz.localhost',
        '127.9.9.9',
        'LOCALHOST',
        '127.0.0.1:99999',
        '127.0.0.1:',
      ),
    },
    { weight: 1, arbitrary: fc.constantFrom('evil.example', '', '10.0.0.1', 'localhost.evil.example') },
  )
}

export function origin(state: FuzzState): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    { weight: 85, arbitrary: fc.constant(undefined) },
    {
      weight: 15,
      arbitrary: fc.constantFrom(
        `http://127.0.0.1:${state.port}`,
        `http://localhost:${state.port}`,
        'null',
        'http://evil.example',
        'https://127.0.0.1',
        'not a url',
        'file://',
        `http://127.0.0.1:${state.port}/path`,
      ),
    },
  )
}

export const contentType: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 82, arbitrary: fc.constant('application/json') },
  {
    weight: 18,
    arbitrary: fc.constantFrom(
      undefined,
      'application/json; charset=utf-8',
      'APPLICATION/JSON',
      'application/merge-patch+json',
      'application/json; charset=utf-16',
      'text/plain',
      'text/plain;charset=UTF-8',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      '',
      'application/jsonx',
      'json',
      ';;;',
    ),
  },
)

/** A header value Node's HTTP client agrees to send (latin-1, no control characters but tab). */
export const headerSafe = (text: string): string => text.replace(/[^\t\x20-\x7e\x80-\xff]/g, '?').slice(0, 2000)

/** Headers the gateway reads, and some it does not. */
export const extraHeaders: fc.Arbitrary<[string, string][]> = fc.array(
  fc.tuple(
    fc.constantFrom(
      'if-match',
      'last-event-id',
      'accept',
      'accept-encoding',
      'x-forwarded-for',
      'x-forwarded-host',
      'cookie',
      'x-request-id',
      'sec-websocket-protocol',
      'range',
      'x-fuzz',
      'conveyor-next-after',
    ),
    fc.oneof(
      fc.constantFrom('*', '"1"', 'W/"2"', '0', '-1', '1e3', 'abc', '99999999999999999999', '"', 'W/', ''),
      hostileString.map(headerSafe),
    ),
  ),
  { maxLength: 3 },
)
