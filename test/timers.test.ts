import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { startWorker, type ActorWorker } from '../actors/worker/worker.ts'
import { ManualClock } from '../actors/worker/clock.ts'
import { keys } from '../runtime/keys.ts'
import { createLogger } from '../runtime/logger.ts'
import { ConveyorProcess } from './processes.ts'

const lifecycle = (ms: number) => ({
  initial: 'waiting',
  states: {
    waiting: { after: { [ms]: 'expired' }, on: { DONE: 'done' } },
    expired: { type: 'final' },
    done: { type: 'final' },
  },
})

let stack: Stack
beforeAll(async () => {
  stack = await startStack()
})
afterAll(async () => stack?.close())

const stateOf = async (type: string, name: string): Promise<string> =>
  (await api(stack.url, 'GET', `/resources/${type}/${name}`)).body.status.state
const timerKeys = async (): Promise<number> => await stack.connections.etcd.getAll().prefix(keys.timers()).count()

describe('durable timers with an injected clock', () => {
  let worker: ActorWorker
  let clock: ManualClock
  afterAll(async () => worker?.close())

  it('fire when the clock passes the delay, and are cancelled when the state is left first', async () => {
    clock = new ManualClock(Date.now())
    worker = await startWorker({
      connections: stack.connections,
      clock,
      timerHorizonMs: 120_000,
      leaseTtlSeconds: 2,
      logger: createLogger('w', 'error'),
    })
    await eventually(() => (worker.owned().size === 64 ? true : undefined), 'partitions')
    await api(stack.url, 'POST', '/resource-definitions', {
      name: 'lease',
      version: '1',
      schema: { type: 'object' },
      lifecycle: lifecycle(60_000),
    })
    await api(stack.url, 'POST', '/resources', { name: 'expires', resource: 'lease', spec: {} })
    await api(stack.url, 'POST', '/resources', { name: 'finishes', resource: 'lease', spec: {} })
    expect(await timerKeys()).toBe(2)
    const actor = await api(stack.url, 'GET', '/resources/lease/expires/actor')
    expect(actor.body.timers).toHaveLength(1)

    expect((await api(stack.url, 'POST', '/resources/lease/finishes/events', { type: 'DONE' })).body.state).toBe('done')
    expect(await timerKeys()).toBe(1)

    // The gateway set the due time from its own clock: move the worker's clock relative to it.
    const dueAt = Date.parse(actor.body.timers[0].dueAt)
    clock.advance(dueAt - 1000 - clock.now())
    expect(await stateOf('lease', 'expires')).toBe('waiting')
    clock.advance(2_000)
    await eventually(
      async () => ((await stateOf('lease', 'expires')) === 'expired' ? true : undefined),
      'the timer to fire',
    )
    expect(await stateOf('lease', 'finishes')).toBe('done')
    expect(await timerKeys()).toBe(0)
    const history = await api(stack.url, 'GET', '/resources/lease/expires/history?kind=transitioned')
    expect(history.body.items.map((h: any) => `${h.event.from}->${h.event.to}`)).toEqual(['waiting->expired'])
    const finished = await api(stack.url, 'GET', '/resources/lease/finishes/history?kind=transitioned')
    expect(finished.body.items.map((h: any) => `${h.event.from}->${h.event.to}`)).toEqual(['waiting->done'])
    await worker.close()
  })
})

describe('durable timers across crashes', () => {
  it('fire after kill -9 of every worker and a restart: late, but exactly once', async () => {
    await api(stack.url, 'POST', '/resource-definitions', {
      name: 'crashy',
      version: '1',
      schema: { type: 'object' },
      lifecycle: lifecycle(1500),
    })
    const env = { ...stack.env, CONVEYOR_WORKER_LEASE_TTL: '1', CONVEYOR_DATA_DIR: '/tmp/conveyor-unused' }
    const first = new ConveyorProcess(['worker'], env)
    await first.waitFor(/worker \S+ running/)
    await eventually(
      async () =>
        (await stack.connections.etcd.getAll().prefix(keys.partitionClaims()).count()) === 64 ? true : undefined,
      'claims',
    )
    const created = await api(stack.url, 'POST', '/resources', { name: 'survivor', resource: 'crashy', spec: {} })
    const dueAt = Date.parse(created.body.metadata.createdAt) + 1500
    first.kill('SIGKILL')
    await first.exited
    await eventually(() => (Date.now() > dueAt + 1500 ? true : undefined), 'the due time to pass with no worker alive')
    expect(await stateOf('crashy', 'survivor')).toBe('waiting')

    const second = new ConveyorProcess(['worker'], env)
    try {
      await eventually(
        async () => ((await stateOf('crashy', 'survivor')) === 'expired' ? true : undefined),
        'the late timer to fire',
      )
    } finally {
      second.kill('SIGKILL')
      await second.exited
    }
    const third = new ConveyorProcess(['worker'], env)
    try {
      await third.waitFor(/worker \S+ running/)
      await eventually(
        async () =>
          (await stack.connections.etcd.getAll().prefix(keys.partitionClaims()).count()) === 64 ? true : undefined,
        'claims by the third worker',
      )
      const history = await eventually(async () => {
        const response = await api(stack.url, 'GET', '/resources/crashy/survivor/history?kind=transitioned')
        return response.body.items.length > 0 ? response.body.items : undefined
      }, 'the transition in history')
      expect(history.map((h: any) => `${h.event.from}->${h.event.to}`)).toEqual(['waiting->expired'])
      expect(await stack.connections.etcd.getAll().prefix(keys.timers()).count()).toBe(0)
    } finally {
      third.kill('SIGTERM')
      await third.exited
    }
  })
})
