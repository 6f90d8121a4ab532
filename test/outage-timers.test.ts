import { afterAll, beforeAll, expect, it } from 'vitest'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { startWorker, type ActorWorker } from '../actors/worker/worker.ts'
import { createLogger } from '../runtime/logger.ts'

let stack: Stack
let worker: ActorWorker
beforeAll(async () => {
  stack = await startStack()
  // A short horizon: the timer below is only armed by a scan that runs while etcd is paused.
  worker = await startWorker({
    connections: stack.connections,
    timerHorizonMs: 2000,
    leaseTtlSeconds: 30,
    logger: createLogger('worker', 'error'),
  })
  await eventually(() => (worker.owned().size === 64 ? true : undefined), 'the worker to own every partition')
})
afterAll(async () => {
  await worker?.close()
  await stack?.close()
})

it('a timer due after an etcd outage fires once the store answers again', async () => {
  await api(stack.url, 'POST', '/resource-definitions', {
    name: 'outage-timer',
    version: '1',
    schema: { type: 'object' },
    lifecycle: { initial: 'waiting', states: { waiting: { after: { 9000: 'expired' } }, expired: { type: 'final' } } },
  })
  const created = await api(stack.url, 'POST', '/resources', { name: 't', resource: 'outage-timer', spec: {} })
  expect(created.status).toBe(201)
  const dueAt = Date.now() + 9000
  const etcd = stack.servers.etcd.child.pid!
  process.kill(etcd, 'SIGSTOP')
  try {
    // Every scan fails meanwhile, including the one that would arm the timer (due within 2 s).
    await eventually(
      () => (Date.now() > dueAt - 500 ? true : undefined),
      'the scans before the due time to fail',
      15_000,
    )
  } finally {
    process.kill(etcd, 'SIGCONT')
  }
  await eventually(
    async () => {
      const response = await api(stack.url, 'GET', '/resources/outage-timer/t')
      return response.body.status?.state === 'expired' ? true : undefined
    },
    'the late timer to fire',
    20_000,
  )
  const history = await api(stack.url, 'GET', '/resources/outage-timer/t/history?kind=transitioned')
  expect(history.body.items.map((h: any) => `${h.event.from}->${h.event.to}`)).toEqual(['waiting->expired'])
}, 60_000)
