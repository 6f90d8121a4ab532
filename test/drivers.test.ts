import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { defineDriver, runDriver, RetryableError, TerminalError } from 'conveyor'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { ConveyorProcess } from './processes.ts'

let stack: Stack
let dir: string
const FIXTURE = fileURLToPath(new URL('./fixtures/recording-driver.ts', import.meta.url))

beforeAll(async () => {
  stack = await startStack({ worker: true })
  dir = await mkdtemp(join(tmpdir(), 'conveyor-drivers-'))
  for (const name of ['job', 'task'])
    expect(
      (await api(stack.url, 'POST', '/resource-definitions', { name, version: '1', schema: { type: 'object' } }))
        .status,
    ).toBe(201)
})
afterAll(async () => {
  await stack?.close()
  await rm(dir, { recursive: true, force: true })
})

const recordLines = async (file: string): Promise<string[]> =>
  (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean)

describe('drivers', () => {
  it('two instances of one driver (separate processes) share one durable consumer and split the work', async () => {
    const record = join(dir, 'shared.txt')
    await writeFile(record, '')
    const env = { ...stack.env, RECORD_FILE: record, RECONCILE_MS: '30' }
    const instances = [
      new ConveyorProcess(['driver', FIXTURE], { ...env, DRIVER_INSTANCE: 'a' }),
      new ConveyorProcess(['driver', FIXTURE], { ...env, DRIVER_INSTANCE: 'b' }),
    ]
    try {
      await Promise.all(instances.map((p) => p.waitFor(/driver recorder running/)))
      const names = Array.from({ length: 40 }, (_, i) => `job-${i}`)
      await Promise.all(
        names.map(async (name) =>
          expect((await api(stack.url, 'POST', '/resources', { name, resource: 'job', spec: {} })).status).toBe(201),
        ),
      )
      const lines = await eventually(
        async () => {
          const all = await recordLines(record)
          return all.length >= 40 ? all : undefined
        },
        'all 40 runs',
        30_000,
      )
      const byInstance = new Map<string, number>()
      for (const line of lines) byInstance.set(line.split(' ')[0]!, (byInstance.get(line.split(' ')[0]!) ?? 0) + 1)
      expect(new Set(lines.map((l) => l.split(' ')[1])).size).toBe(40)
      expect(lines).toHaveLength(40)
      expect(byInstance.get('a')).toBeGreaterThan(0)
      expect(byInstance.get('b')).toBeGreaterThan(0)
      const consumers = await stack.connections.jsm.consumers.list('CONVEYOR_EVENTS').next()
      expect(consumers.filter((c) => c.name === 'driver_recorder')).toHaveLength(1)
      await eventually(async () => {
        const listed = await api(stack.url, 'GET', '/resources/job?limit=100')
        return listed.body.items.every((r: any) => r.status.drivers.recorder?.success === true) ? true : undefined
      }, 'every outcome recorded on its resource')
    } finally {
      for (const p of instances) p.kill('SIGTERM')
      await Promise.all(instances.map((p) => p.exited))
    }
  })

  it('retries RetryableError and plain errors, fails at once on TerminalError or success:false', async () => {
    const attempts = new Map<string, number[]>()
    const handle = await runDriver(
      defineDriver({
        name: 'picky',
        resources: ['task'],
        async reconcile(ctx) {
          const seen = attempts.get(ctx.resource.name) ?? []
          seen.push(ctx.attempt)
          attempts.set(ctx.resource.name, seen)
          const mode = ctx.resource.spec.mode
          if (mode === 'flaky' && ctx.attempt < 3) throw new RetryableError('not yet', { retryAfterMs: 10 })
          if (mode === 'crashy' && ctx.attempt < 2) throw new Error('boom')
          if (mode === 'terminal') throw new TerminalError('bad spec')
          if (mode === 'refuse') return { success: false, message: 'refused' }
          if (mode === 'hopeless') throw new RetryableError('never', { retryAfterMs: 10 })
          return { success: true, message: `ok on ${ctx.attempt}` }
        },
      }),
      { natsUrl: stack.servers.natsUrl, natsAuth: stack.servers.natsAuth, maxDeliver: 4 },
    )
    try {
      for (const mode of ['flaky', 'crashy', 'terminal', 'refuse', 'hopeless']) {
        expect(
          (await api(stack.url, 'POST', '/resources', { name: mode, resource: 'task', spec: { mode } })).status,
        ).toBe(201)
      }
      const outcome = (name: string) =>
        eventually(
          async () => (await api(stack.url, 'GET', `/resources/task/${name}`)).body.status.drivers.picky,
          `outcome of ${name}`,
        )
      expect(await outcome('flaky')).toMatchObject({ success: true, message: 'ok on 3', attempt: 3 })
      expect(await outcome('crashy')).toMatchObject({ success: true, attempt: 2 })
      expect(await outcome('terminal')).toMatchObject({ success: false, message: 'bad spec', attempt: 1 })
      expect(await outcome('refuse')).toMatchObject({ success: false, message: 'refused', attempt: 1 })
      const hopeless = await outcome('hopeless')
      expect(hopeless).toMatchObject({ success: false, attempt: 4 })
      expect(hopeless.message).toMatch(/delivery limit: never/)
      expect(attempts.get('flaky')).toEqual([1, 2, 3])
      expect(attempts.get('terminal')).toEqual([1])
      expect(attempts.get('hopeless')).toEqual([1, 2, 3, 4])
    } finally {
      await handle.close()
    }
  })

  it('an outcome already recorded makes a redelivery a no-op (no second side effect)', async () => {
    let runs = 0
    const crashing = defineDriver({
      name: 'once',
      resources: ['task'],
      reconcile() {
        runs++
        return { success: true }
      },
    })
    const handle = await runDriver(crashing, { natsUrl: stack.servers.natsUrl, natsAuth: stack.servers.natsAuth })
    try {
      await eventually(async () => {
        const listed = await api(stack.url, 'GET', '/resources/task')
        return listed.body.items.every((r: any) => r.status.drivers.once) ? true : undefined
      }, 'all task outcomes')
      expect(runs).toBe(5)
    } finally {
      await handle.close()
    }
    // Re-deliver everything from the start of the stream to the same driver: all were done.
    await stack.connections.jsm.consumers.delete('CONVEYOR_EVENTS', 'driver_once')
    const again = await runDriver(crashing, { natsUrl: stack.servers.natsUrl, natsAuth: stack.servers.natsAuth })
    try {
      await eventually(
        async () =>
          (await stack.connections.jsm.consumers.info('CONVEYOR_EVENTS', 'driver_once')).num_ack_pending === 0 &&
          (await stack.connections.jsm.consumers.info('CONVEYOR_EVENTS', 'driver_once')).num_pending === 0
            ? true
            : undefined,
        'the replay to be consumed',
      )
      expect(runs).toBe(5)
    } finally {
      await again.close()
    }
  })

  it('defineDriver names the bad property', () => {
    expect(() => defineDriver({ name: 'Bad', resources: ['x'], reconcile: () => {} })).toThrow(/driver\.name/)
    expect(() => defineDriver({ name: 'ok', resources: 'x', reconcile: () => {} } as never)).toThrow(
      /driver\.resources/,
    )
    expect(() => defineDriver({ name: 'ok', resources: ['Bad'], reconcile: () => {} })).toThrow(
      /driver\.resources\[0\]/,
    )
    expect(() => defineDriver({ name: 'ok', resources: ['x'], concurrency: 0, reconcile: () => {} })).toThrow(
      /driver\.concurrency/,
    )
    expect(() => defineDriver({ name: 'ok', resources: ['x'] } as never)).toThrow(/driver\.reconcile/)
  })
})
