import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defineDriver, runDriver, type DriverContext, type RunningDriver } from 'conveyor'
import { announceDriver } from '../runtime/driver-registry.ts'
import { createLogger } from '../runtime/logger.ts'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { ConveyorProcess } from './processes.ts'

let stack: Stack
const quiet = createLogger('test', 'error')
const REPLAY_IDLE = '3s'

beforeAll(async () => {
  // An abandoned replay's consumer expires after this long without a driver fetching from it.
  process.env.CONVEYOR_REPLAY_IDLE_TIMEOUT = REPLAY_IDLE
  stack = await startStack({ worker: true })
  expect(
    (await api(stack.url, 'POST', '/resource-definitions', { name: 'chore', version: '1', schema: { type: 'object' } }))
      .status,
  ).toBe(201)
  for (const name of ['c1', 'c2', 'c3', 'c4', 'c5', 'c6'])
    expect((await api(stack.url, 'POST', '/resources', { name, resource: 'chore', spec: {} })).status).toBe(201)
})
afterAll(async () => {
  await stack?.close()
  delete process.env.CONVEYOR_REPLAY_IDLE_TIMEOUT
})

const replayConsumers = async (): Promise<string[]> =>
  (await stack.connections.jsm.consumers.list('CONVEYOR_EVENTS').next())
    .map((c) => c.name)
    .filter((name) => name.includes('_replay_'))

/** Makes a driver known to the registry (seen once) without leaving an instance running. */
async function seenOnce(name: string): Promise<void> {
  const announced = await announceDriver(
    stack.connections,
    { name, resources: ['chore'], instance: `${name}-once`, version: 'test', concurrency: 1 },
    quiet,
  )
  await announced.close()
  await eventually(
    async () =>
      (await api(stack.url, 'GET', '/drivers')).body.items.some((d: { name: string }) => d.name === name)
        ? true
        : undefined,
    `the registry to know ${name}`,
  )
}

async function cli(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = new ConveyorProcess([...args, '--api', stack.url], stack.env)
  const { code } = await child.exited
  return { code, output: child.output }
}

describe('replays', () => {
  it('refuses a replay to a driver never seen: 404 naming the driver, and nothing left behind', async () => {
    const before = await replayConsumers()
    const refused = await api(stack.url, 'POST', '/replay', { driver: 'nosuch', type: 'chore', fromSequence: 1 })
    expect(refused.status).toBe(404)
    expect(refused.headers.get('content-type')).toContain('application/problem+json')
    expect(refused.body.detail).toMatch(/"nosuch"/)
    expect(refused.body.errors).toEqual([{ path: '/driver', message: expect.stringMatching(/never been seen/) }])
    expect(await replayConsumers()).toEqual(before)
    expect((await api(stack.url, 'GET', '/replay')).body.items.some((r: any) => r.driver === 'nosuch')).toBe(false)

    const run = await cli(['replay', '--driver', 'nosuch', '--type', 'chore'])
    expect(run.code).toBe(1)
    expect(run.output).toMatch(/404 .*"nosuch"/)
  })

  it('cancels a replay: DELETE /replay/:id marks it cancelled and removes its consumer; unknown ids are 404', async () => {
    await seenOnce('sleeper')
    const started = await api(stack.url, 'POST', '/replay', { driver: 'sleeper', type: 'chore', fromSequence: 1 })
    expect(started.status).toBe(201)
    // Nobody serves it now: the answer says so.
    expect(started.body.warnings?.[0]).toMatch(/no running instance/)
    expect(await replayConsumers()).toContain(started.body.consumer)

    const cancelled = await api(stack.url, 'DELETE', `/replay/${started.body.id}`)
    expect(cancelled.status).toBe(200)
    expect(cancelled.body).toMatchObject({ id: started.body.id, status: 'cancelled' })
    expect(cancelled.body.finishedAt).toEqual(expect.any(String))
    expect(await replayConsumers()).not.toContain(started.body.consumer)
    expect((await api(stack.url, 'GET', `/replay/${started.body.id}`)).body.status).toBe('cancelled')
    // Cancelling again changes nothing.
    expect((await api(stack.url, 'DELETE', `/replay/${started.body.id}`)).body.status).toBe('cancelled')
    const missing = await api(stack.url, 'DELETE', '/replay/0123456789ab')
    expect(missing.status).toBe(404)
    expect((await api(stack.url, 'DELETE', '/replay/nope')).status).toBe(400)
  })

  it('a driver working through a replay stops when it is cancelled', async () => {
    const calls: string[] = []
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => (release = resolve))
    const handle: RunningDriver = await runDriver(
      defineDriver({
        name: 'plodder',
        resources: ['chore'],
        async reconcile(ctx: DriverContext) {
          calls.push(ctx.resource.name)
          if (ctx.replayed) await gate
          return { success: true }
        },
      }),
      { connections: stack.connections, logger: quiet },
    )
    stack.drivers.push(handle)
    await handle.caughtUp
    const live = calls.length
    const started = await api(stack.url, 'POST', '/replay', {
      driver: 'plodder',
      type: 'chore',
      fromSequence: 1,
      force: true,
    })
    expect(started.status).toBe(201)
    expect(started.body.warnings).toBeUndefined()
    try {
      await eventually(() => (calls.length > live ? true : undefined), 'the replay to start')
      expect((await api(stack.url, 'DELETE', `/replay/${started.body.id}`)).body.status).toBe('cancelled')
    } finally {
      release()
    }
    const afterCancel = calls.length
    // Give the follower time to fetch more if it were still going.
    await eventually(async () => ((await replayConsumers()).length === 0 ? true : undefined), 'the consumer gone')
    await new Promise((resolve) => setTimeout(resolve, 2500))
    expect(calls.length).toBe(afterCancel)
    expect((await api(stack.url, 'GET', `/replay/${started.body.id}`)).body.status).toBe('cancelled')
  })

  it('a driver takes four replays at once, each on one of its replay consumers; a fifth is 409 until one ends', async () => {
    await seenOnce('busy')
    const started = []
    for (let i = 0; i < 4; i++) {
      const replay = await api(stack.url, 'POST', '/replay', { driver: 'busy', type: 'chore', fromSequence: 1 })
      expect(replay.status).toBe(201)
      started.push(replay.body)
    }
    expect(started.map((r) => r.consumer).sort()).toEqual([0, 1, 2, 3].map((slot) => `driver_busy_replay_${slot}`))
    const fifth = await api(stack.url, 'POST', '/replay', { driver: 'busy', type: 'chore', fromSequence: 1 })
    expect(fifth.status).toBe(409)
    expect(fifth.body.detail).toMatch(/4 replays to driver busy are running/)
    expect((await api(stack.url, 'DELETE', `/replay/${started[1].id}`)).status).toBe(200)
    const again = await api(stack.url, 'POST', '/replay', { driver: 'busy', type: 'chore', fromSequence: 1 })
    expect(again.status).toBe(201)
    expect(again.body.consumer).toBe(started[1].consumer)
    for (const replay of [...started, again.body]) await api(stack.url, 'DELETE', `/replay/${replay.id}`)
  })

  it('an abandoned replay expires: its consumer goes after the idle timeout and the replay says expired', async () => {
    await seenOnce('absent')
    const started = await api(stack.url, 'POST', '/replay', { driver: 'absent', type: 'chore', fromSequence: 1 })
    expect(started.status).toBe(201)
    const info = await stack.connections.jsm.consumers.info('CONVEYOR_EVENTS', started.body.consumer)
    expect(info.config.inactive_threshold).toBe(3_000_000_000)
    expect(started.body.idleTimeoutMs).toBe(3000)
    const expired = await eventually(
      async () => {
        const got = await api(stack.url, 'GET', `/replay/${started.body.id}`)
        return got.body.status === 'expired' ? got.body : undefined
      },
      'the replay to expire',
      30_000,
    )
    expect(expired.finishedAt).toEqual(expect.any(String))
    expect(await replayConsumers()).not.toContain(started.body.consumer)
    expect((await api(stack.url, 'GET', '/replay')).body.items.find((r: any) => r.id === started.body.id).status).toBe(
      'expired',
    )
  })

  it('the CLI stops a replay on Ctrl-C by cancelling it, and stops when a replay is cancelled elsewhere', async () => {
    await seenOnce('idler')
    const child = new ConveyorProcess(
      ['replay', '--driver', 'idler', '--type', 'chore', '--from-seq', '1', '--api', stack.url],
      stack.env,
    )
    const [, id] = await child.waitFor(/replay ([a-f0-9]{12}): \d+\/\d+ delivered/)
    expect(child.output).toMatch(/no running instance/)
    child.kill('SIGINT')
    const { code } = await child.exited
    expect(code).toBe(130)
    expect(child.output).toMatch(/cancelled/)
    expect((await api(stack.url, 'GET', `/replay/${id}`)).body.status).toBe('cancelled')

    const other = new ConveyorProcess(
      ['replay', '--driver', 'idler', '--type', 'chore', '--from-seq', '1', '--api', stack.url],
      stack.env,
    )
    const [, otherId] = await other.waitFor(/replay ([a-f0-9]{12}): \d+\/\d+ delivered/)
    await api(stack.url, 'DELETE', `/replay/${otherId}`)
    const ended = await other.exited
    expect(ended.code).toBe(1)
    expect(other.output).toMatch(/cancelled/)
  })
})
