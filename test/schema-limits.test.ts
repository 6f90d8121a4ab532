import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { ConveyorProcess } from './processes.ts'

// The spec checks run in a gateway of its own (a child process): a pattern that backtracks blocks
// that process's event loop, not the test's, so the test sees it as a request that times out.
let stack: Stack
let gateway: ConveyorProcess
let url: string
let dir: string

beforeAll(async () => {
  stack = await startStack({ worker: true })
  dir = await mkdtemp(join(tmpdir(), 'conveyor-limits-'))
  gateway = new ConveyorProcess(['gateway', '--port', '0'], { ...stack.env, CONVEYOR_DATA_DIR: dir })
  url = (await gateway.waitFor(/listening on (http:\/\/\S+)/))[1]!
}, 60_000)
afterAll(async () => {
  gateway?.kill()
  await gateway?.exited
  await stack?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

/** A request that must be answered within `ms`, however loaded the machine. */
async function quick(method: string, path: string, body: unknown, ms = 5_000): Promise<{ status: number; body: any }> {
  const response = await fetch(url + path, {
    method,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(ms),
  })
  return { status: response.status, body: await response.json() }
}

const define = (name: string, extra: Record<string, unknown>) =>
  api(url, 'POST', '/resource-definitions', { name, version: '1', ...extra })

describe('patterns in user schemas run in linear time', () => {
  it('a catastrophic pattern answers 30-40 character strings at once (pattern, patternProperties, propertyNames)', async () => {
    const saved = await define('regexy', {
      schema: {
        type: 'object',
        properties: { name: { type: 'string', pattern: '^(a+)+$' } },
        patternProperties: { '^(b+)+$': { type: 'integer' } },
        propertyNames: { pattern: '^((n|a|m|e|b)+)+$|^(c+)+!$' },
      },
    })
    expect(saved.status).toBe(201)
    for (const length of [30, 35, 40]) {
      const refused = await quick('POST', '/resources', {
        name: `bad-${length}`,
        resource: 'regexy',
        spec: { name: `${'a'.repeat(length)}!` },
      })
      expect(refused.status).toBe(400)
      expect(refused.body.errors).toContainEqual({ path: '/spec/name', message: expect.stringMatching(/pattern/) })
    }
    const keyed = await quick('POST', '/resources', {
      name: 'keys',
      resource: 'regexy',
      spec: { [`${'b'.repeat(40)}!`]: 1, [`${'c'.repeat(40)}?`]: 1, bbbb: 'not an integer' },
    })
    expect(keyed.status).toBe(400)
    expect(keyed.body.errors.map((e: any) => e.path)).toEqual(expect.arrayContaining(['/spec/bbbb']))
    const good = await quick('POST', '/resources', { name: 'good', resource: 'regexy', spec: { name: 'a'.repeat(40) } })
    expect(good.status).toBe(201)
  }, 60_000)

  it('a pattern a linear-time engine cannot run is a 400 naming its path', async () => {
    const lookbehind = await define('behind', {
      schema: { type: 'object', properties: { name: { type: 'string', pattern: '(?<=a)b' } } },
    })
    expect(lookbehind.status).toBe(400)
    expect(lookbehind.body.errors).toEqual([
      { path: '/schema/properties/name/pattern', message: expect.stringMatching(/lookaround|backreference/) },
    ])
    const others = await define('others', {
      schema: {
        type: 'object',
        $defs: { word: { type: 'string', pattern: '^(?!x)' } },
        patternProperties: { '^(a)\\1/x$': { type: 'string' } },
        propertyNames: { pattern: '(?i)abc' },
        prefixItems: [{ pattern: 'ok' }],
        enum: [{ pattern: '(?<=data, not a schema)' }],
      },
    })
    expect(others.status).toBe(400)
    expect(others.body.errors.map((e: any) => e.path).sort()).toEqual([
      '/schema/$defs/word/pattern',
      '/schema/patternProperties/^(a)\\1~1x$',
      '/schema/propertyNames/pattern',
    ])
    expect((await api(url, 'GET', '/resource-definitions/others')).status).toBe(404)
  })

  it('a definition stored before patterns were checked refuses specs with a 400 rather than failing', async () => {
    expect((await define('legacy', { schema: { type: 'object' } })).status).toBe(201)
    const key = '/conveyor/definitions/legacy'
    const stored = JSON.parse((await stack.connections.etcd.get(key).string())!)
    const schema = { type: 'object', properties: { name: { type: 'string', pattern: '(?<=a)b' } } }
    await stack.connections.etcd.put(key).value(JSON.stringify({ ...stored, schema }))
    const refused = await quick('POST', '/resources', { name: 'old', resource: 'legacy', spec: { name: 'ab' } })
    expect(refused.status).toBe(400)
    expect(refused.body.errors).toEqual([
      { path: '/spec', message: expect.stringMatching(/save the definition again/) },
    ])
  })
})

const lifecycle = (states: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  initial: Object.keys(states)[0],
  ...extra,
  states,
})
const delays = (count: number, target = 'done') =>
  Object.fromEntries(Array.from({ length: count }, (_, i) => [String(1000 + i), target]))

describe('lifecycle limits are checked when a definition is saved', () => {
  it('refuses a state with more delays than one commit can hold, and as many across parallel regions', async () => {
    const many = await define('delays', {
      schema: { type: 'object' },
      lifecycle: lifecycle({ waiting: { after: delays(33) }, done: { type: 'final' } }),
    })
    expect(many.status).toBe(400)
    expect(many.body.errors).toEqual([
      { path: '/lifecycle/states/waiting/after', message: expect.stringMatching(/at most 32/) },
    ])
    const regions = await define('delays', {
      schema: { type: 'object' },
      lifecycle: lifecycle({
        both: {
          type: 'parallel',
          states: {
            a: { initial: 'x', states: { x: { after: delays(20, 'y') }, y: {} } },
            b: { initial: 'x', states: { x: { after: delays(20, 'y') }, y: {} } },
          },
        },
      }),
    })
    expect(regions.status).toBe(400)
    expect(regions.body.errors).toEqual([
      { path: '/lifecycle/states/both', message: expect.stringMatching(/40 `after` delays.*at most 32/) },
    ])
    const fits = await define('delays', {
      schema: { type: 'object' },
      lifecycle: lifecycle({ waiting: { after: delays(32) }, done: { type: 'final' } }),
    })
    expect(fits.status).toBe(201)
  })

  it('refuses more states than the limit, and an initial context over the size limit', async () => {
    const states = Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`s${i}`, {}]))
    const tooMany = await define('states', { schema: { type: 'object' }, lifecycle: lifecycle(states) })
    expect(tooMany.status).toBe(400)
    expect(tooMany.body.errors[0].message).toMatch(/at most 500 states/)
    const big = await define('bigcontext', {
      schema: { type: 'object' },
      lifecycle: lifecycle({ idle: {} }, { context: { blob: 'x'.repeat(70 * 1024) } }),
    })
    expect(big.status).toBe(400)
    expect(big.body.errors).toEqual([{ path: '/lifecycle/context', message: expect.stringMatching(/65536 bytes/) }])
  })

  it('refuses an assign whose value grows with itself, naming the path', async () => {
    const assign = (params: Record<string, unknown>) => ({
      idle: { on: { E: { actions: [{ type: 'assign', params }] } } },
    })
    const cases: [Record<string, unknown>, string][] = [
      [{ log: { $append: { $context: '' } } }, '/log/$append/$context'],
      [{ log: { $context: '.' } }, '/log/$context'],
      [{ log: { $append: { $context: 'log.0' } } }, '/log/$append/$context'],
      [{ log: { $append: { $append: { $event: 'x' } } } }, '/log/$append/$append'],
      [{ a: { $append: { $context: 'b' } }, b: { $context: 'a' } }, '/a/$append/$context'],
    ]
    for (const [params, at] of cases) {
      const response = await define('selfref', { schema: { type: 'object' }, lifecycle: lifecycle(assign(params)) })
      expect(response.status, JSON.stringify(params)).toBe(400)
      expect(response.body.errors).toEqual([
        {
          path: `/lifecycle/states/idle/on/E/actions/0/params${at}`,
          message: expect.stringMatching(/grows with itself|whole context/),
        },
      ])
    }
    const fine = await define('selfref', {
      schema: { type: 'object' },
      lifecycle: lifecycle(
        assign({
          log: { $append: { $event: 'x' } },
          last: { $context: 'log' },
          n: { $inc: 1 },
          keep: { $context: 'keep' },
        }),
      ),
    })
    expect(fine.status).toBe(201)
  })
})

describe('an event whose result exceeds the limits is refused, not committed', () => {
  it('answers 409 with the reason and leaves the actor as it was', async () => {
    expect(
      (
        await define('growing', {
          schema: { type: 'object' },
          lifecycle: lifecycle({
            open: {
              on: {
                ADD: { actions: [{ type: 'assign', params: { items: { $append: { $event: 'blob' } } } }] },
                CLOSE: 'closed',
              },
            },
            closed: { type: 'final' },
          }),
        })
      ).status,
    ).toBe(201)
    expect((await api(url, 'POST', '/resources', { name: 'g', resource: 'growing', spec: {} })).status).toBe(201)
    const blob = 'x'.repeat(20 * 1024)
    const answers: number[] = []
    let refused: any
    for (let i = 0; i < 5; i++) {
      const response = await api(url, 'POST', '/resources/growing/g/events', { type: 'ADD', id: `add-${i}`, blob })
      answers.push(response.status)
      if (response.status === 409) refused ??= response.body
    }
    expect(answers).toEqual([200, 200, 200, 409, 409])
    expect(refused).toMatchObject({ status: 409, state: 'open' })
    expect(refused.type).toBe('urn:conveyor:problem:limit-exceeded')
    expect(refused.detail).toMatch(/context.*65536 bytes/)
    const actor = await eventually(async () => {
      const response = await api(url, 'GET', '/resources/growing/g/actor')
      return response.status === 200 ? response.body : undefined
    }, 'the actor')
    expect(actor.seq).toBe(3)
    expect(actor.context.items).toHaveLength(3)
    // The actor goes on: an event within the limits is applied.
    const closed = await api(url, 'POST', '/resources/growing/g/events', { type: 'CLOSE' })
    expect(closed.status).toBe(200)
    expect(closed.body.state).toBe('closed')
  })
})
