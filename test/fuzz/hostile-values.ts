import fc from 'fast-check'

/** Strings that have broken parsers, validators and terminals before. */
const NASTY_STRINGS = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\uD800',
  '\uDFFF',
  'x\uDBFF',
  '\uDC00y',
  '\u202Egnp.exe',
  '\u200F\u05D0\u05D1',
  '\u2066isolate\u2069',
  '\uFEFFbom',
  '\u0301\u0301\u0301',
  'Z\u0351\u0337\u0322a\u0335\u0358l\u0334g\u0338o',
  '𝕏𝕐𝕫',
  '🏳️‍🌈',
  '\r\n',
  '\t',
  '\u2028\u2029',
  '..',
  '../../etc/passwd',
  '%00',
  '%2e%2e%2f',
  '${jndi:ldap://x}',
  '{{7*7}}',
  '<script>alert(1)</script>',
  "'; DROP TABLE x; --",
  'null',
  'undefined',
  'true',
  '-1',
  '0',
  '1e309',
  '0x1F',
  'NaN',
  'Infinity',
  '__proto__',
  'constructor',
  'prototype',
  'hasOwnProperty',
  'CON',
  'a'.repeat(64),
  'a'.repeat(65),
  'a'.repeat(300),
  'é'.repeat(2000),
  '\uD83D'.repeat(500),
]

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code))
const unicodeUnit = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'grapheme', maxLength: 1, minLength: 1 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 1, minLength: 1 }) },
  { weight: 1, arbitrary: loneSurrogate },
  { weight: 1, arbitrary: fc.constantFrom('\u0000', '\u202E', '\u200F', '\uFEFF', '\uFFFF', '\u0085') },
)

/** Any string a client might send: plain, unicode (lone surrogates, RTL, NUL), nasty, or long. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...NASTY_STRINGS) },
  { weight: 3, arbitrary: fc.string({ unit: unicodeUnit, maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 120_000 }).map((n) => 'x'.repeat(n)) },
)

/** Nesting `depth` levels deep, as arrays or objects. */
export function nested(depth: number, asObject: boolean): unknown {
  let value: unknown = 1
  for (let i = 0; i < depth; i++) value = asObject ? { a: value } : [value]
  return value
}

/** A JSON value of the wrong type, huge, deep, or odd. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: hostileString },
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      null,
      true,
      false,
      0,
      -1,
      1.5,
      -0,
      2 ** 53 + 2,
      -(2 ** 63),
      1e308,
      Number.MIN_VALUE,
      [],
      {},
      [null],
      { '': '' },
    ),
  },
  { weight: 1, arbitrary: fc.double() },
  // Around the gateway's depth limit (64), and past it.
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 55, max: 300 }), fc.boolean()).map(([d, o]) => nested(d, o)) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 20_000 }).map((n) => new Array<number>(n).fill(7)) },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 100, max: 5_000 })
      .map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]))),
  },
)

/** An object key a client might send: odd names, unicode, prototype keys. */
export const hostileKey: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', '', 'metadata', 'status', 'revision', 'x', 'a/b', 'type', 'id'),
  hostileString.filter((s) => s.length < 200),
)
