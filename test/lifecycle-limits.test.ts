import { describe, expect, it } from 'vitest'
import { actorInitializer } from '../actors/lifecycle/initializer.ts'
import { applyEvent } from '../actors/lifecycle/apply-event.ts'
import { buildMachine } from '../actors/lifecycle/machine.ts'
import { applyBatch, type BatchItem } from '../actors/worker/apply-batch.ts'
import { checkLifecycle } from '../definitions/lifecycle.ts'
import { checkSelfReference } from '../definitions/lifecycle-assigns.ts'
import { DEFAULT_ACTOR_LIMITS, jsonBytes } from '../definitions/lifecycle-limits.ts'
import { compileLinear, linearPatternProblem } from '../definitions/linear-regexp.ts'
import { checkSchemaPatterns } from '../definitions/schema-patterns.ts'
import { actorLimitsFromEnv } from '../runtime/config.ts'
import type { ActorRecord } from '../runtime/actor-record.ts'

const NOW = Date.parse('2026-12-01T00:00:00Z')
const roundTrip = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T

function actor(lifecycle: Record<string, unknown>): ActorRecord {
  const { record } = actorInitializer.initial({ uid: 'u', type: 't', name: 'n', runid: 'r', lifecycle, now: NOW })
  return roundTrip(record)
}

const appending = (expression: unknown) => ({
  initial: 'open',
  context: { items: [] },
  states: {
    open: { on: { ADD: { actions: [{ type: 'assign', params: { items: expression } }] }, PING: 'open' } },
  },
})

describe('an event whose result exceeds the size limits is rejected', () => {
  it('by the context size, then by the record size, naming the limit', () => {
    const config = appending({ $append: { $event: 'blob' } })
    const machine = buildMachine(config)
    const limits = { maxContextBytes: 200, maxRecordBytes: 5000 }
    let record = actor(config)
    const add = (id: string, blob: string) => applyEvent(machine, record, { type: 'ADD', id, blob }, NOW, 1, limits)
    const first = add('a', 'x'.repeat(100))
    expect(first.kind).toBe('applied')
    record = roundTrip((first as { record: ActorRecord }).record)
    const second = add('b', 'x'.repeat(100))
    expect(second).toMatchObject({ kind: 'rejected', reason: 'limit', state: 'open' })
    expect((second as { detail: string }).detail).toMatch(/context would be \d+ bytes, over the limit of 200 bytes/)
    const recordLimited = applyEvent(machine, record, { type: 'ADD', id: 'c', blob: 'y' }, NOW, 2, {
      maxContextBytes: 10_000,
      maxRecordBytes: jsonBytes(record) + 3,
    })
    expect(recordLimited).toMatchObject({ kind: 'rejected', reason: 'limit' })
    expect((recordLimited as { detail: string }).detail).toMatch(/record would be \d+ bytes, over the limit/)
  })

  it('a context that doubles on every event stays bounded within one batch, and each refused event is a 409', () => {
    // Saved before the self-reference check existed: the apply-time limit still holds it.
    const config = appending({ $append: { $context: '' } })
    const machine = buildMachine(config)
    const record = actor(config)
    const items: BatchItem[] = Array.from({ length: 30 }, (_, i) => ({
      kind: 'inbox',
      seq: i + 1,
      event: { type: 'ADD', id: `e${i}` },
    }))
    const output = applyBatch({
      type: 't',
      name: 'n',
      machine,
      record,
      items,
      now: NOW,
      servingDrivers: () => [],
    })
    expect(jsonBytes(output.record!.snapshot.context)).toBeLessThanOrEqual(DEFAULT_ACTOR_LIMITS.maxContextBytes)
    const statuses = output.replies.map((r) => r.reply(1, undefined).status)
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(5)
    expect(statuses.slice(-5)).toEqual([409, 409, 409, 409, 409])
    const refused = output.replies.at(-1)!.reply(1, undefined).body as Record<string, unknown>
    expect(refused).toMatchObject({ type: 'urn:conveyor:problem:limit-exceeded', state: 'open' })
  })

  it('an event that changes no context is not measured (only assign grows a record)', () => {
    const config = appending({ $append: { $event: 'blob' } })
    const record = actor(config)
    const result = applyEvent(buildMachine(config), record, { type: 'PING', id: 'p' }, NOW, 1, {
      maxContextBytes: 1,
      maxRecordBytes: 1,
    })
    expect(result.kind).toBe('applied')
  })
})

describe('assigns that grow with themselves are refused', () => {
  const site = (key: string, expression: unknown, pointer = `/p/${key}`) => ({ key, expression, pointer })
  it('whole-context references, nested appends, self-appends and cycles through other keys', () => {
    expect(checkSelfReference([site('a', { $context: '' })]).map((e) => e.path)).toEqual(['/p/a/$context'])
    expect(checkSelfReference([site('a', { $append: { $append: 1 } })]).map((e) => e.path)).toEqual([
      '/p/a/$append/$append',
    ])
    expect(checkSelfReference([site('a', { $append: { $context: 'a.x' } })]).map((e) => e.path)).toEqual([
      '/p/a/$append/$context',
    ])
    // a ← b ← c ← a, each on a different transition.
    const cycle = [
      site('a', { $append: { $context: 'b' } }, '/s1/a'),
      site('b', { $context: 'c' }, '/s2/b'),
      site('c', { $context: 'a' }, '/s3/c'),
    ]
    expect(checkSelfReference(cycle).map((e) => e.path)).toEqual(['/s1/a/$append/$context'])
  })

  it('copies, swaps and appends of event data or of unrelated keys are fine', () => {
    expect(
      checkSelfReference([
        site('a', { $context: 'a' }),
        site('x', { $context: 'y' }),
        site('y', { $context: 'x' }),
        site('log', { $append: { $event: 'line' } }),
        site('all', { $append: { $context: 'log' } }),
        site('n', { $inc: 1 }),
        site('lit', { note: { $context: '' } }),
      ]),
    ).toEqual([])
  })

  it('checkLifecycle reports them with the full pointer, across entry actions too', () => {
    const errors = checkLifecycle({
      initial: 'a',
      states: {
        a: { entry: [{ type: 'assign', params: { h: { $append: { $context: 'h' } } } }] },
      },
    })
    expect(errors).toEqual([
      { path: '/lifecycle/states/a/entry/0/params/h/$append/$context', message: expect.stringMatching(/itself/) },
    ])
  })
})

describe('limits from the environment', () => {
  it('reads sizes, and refuses a record limit above what one commit carries or below the context', () => {
    expect(actorLimitsFromEnv({})).toEqual({})
    expect(actorLimitsFromEnv({ CONVEYOR_MAX_CONTEXT_BYTES: '16KiB', CONVEYOR_MAX_RECORD_BYTES: '256KiB' })).toEqual({
      maxContextBytes: 16 * 1024,
      maxRecordBytes: 256 * 1024,
    })
    expect(() => actorLimitsFromEnv({ CONVEYOR_MAX_RECORD_BYTES: '2MiB' })).toThrow(/at most/)
    expect(() => actorLimitsFromEnv({ CONVEYOR_MAX_CONTEXT_BYTES: '1MiB' })).toThrow(/must not exceed/)
    expect(() => actorLimitsFromEnv({ CONVEYOR_MAX_CONTEXT_BYTES: 'lots' })).toThrow(/size/)
  })
})

describe('patterns run on RE2, with ECMAScript meaning', () => {
  it('matches as the JavaScript engine does on ordinary patterns, in linear time', () => {
    const cases: [string, string, boolean][] = [
      ['^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', 'my-app', true],
      ['^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', 'my-app-', false],
      ['caf\\u00e9', 'un café', true],
      ['^\\p{L}+$', 'Grüße', true],
      ['^(?<major>\\d+)\\.(?<minor>\\d+)$', '1.20', true],
      ['a/b', 'xa/by', true],
      ['^\\d{3}$', '1234', false],
      ['[(?=]', '(', true],
      ['\\\\k', '\\k', true],
      ['', 'anything', true],
      ['^\\s$', '\u00a0', true],
      ['^\\S$', '\u3000', false],
      ['^.$', '\r', false],
      ['^.$', '😀', true],
      ['^[^]$', '\n', true],
    ]
    for (const [pattern, input, expected] of cases) {
      expect(compileLinear(pattern).test(input), `${pattern} on ${input}`).toBe(expected)
      expect(new RegExp(pattern, 'u').test(input)).toBe(expected)
    }
    const started = performance.now()
    expect(compileLinear('^(a+)+$').test(`${'a'.repeat(100_000)}!`)).toBe(false)
    expect(performance.now() - started).toBeLessThan(1000)
  })

  it('refuses backreferences, lookaround, non-ECMAScript syntax and what RE2 cannot run', () => {
    expect(linearPatternProblem('(a)\\1')).toMatch(/backreference/)
    expect(linearPatternProblem('(?<n>a)\\k<n>')).toMatch(/backreference/)
    for (const pattern of ['a(?=b)', 'a(?!b)', '(?<=a)b', '(?<!a)b'])
      expect(linearPatternProblem(pattern)).toMatch(/lookaround/)
    expect(linearPatternProblem('(?i)abc')).toMatch(/ECMAScript/)
    expect(linearPatternProblem('a{1001}')).toMatch(/RE2/)
  })

  it('finds patterns in every schema position (draft-07 too), not in data', () => {
    const errors = checkSchemaPatterns(
      {
        definitions: { a: { pattern: '(?=x)' } },
        dependencies: { b: { pattern: '(?=x)' }, c: ['d'] },
        items: [{ pattern: '(?=x)' }],
        anyOf: [{ not: { pattern: '(?=x)' } }],
        default: { pattern: '(?=x)' },
        const: { pattern: '(?=x)' },
      },
      '/schema',
    )
    expect(errors.map((e) => e.path).sort()).toEqual([
      '/schema/anyOf/0/not/pattern',
      '/schema/definitions/a/pattern',
      '/schema/dependencies/b/pattern',
      '/schema/items/0/pattern',
    ])
  })
})
