import { afterAll, beforeAll, expect, it } from 'vitest'
import { defineDriver, runDriver, type RunningDriver } from 'conveyor'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { createLogger } from '../runtime/logger.ts'
import { consumers, streams } from '../runtime/keys.ts'

let stack: Stack
const quiet = createLogger('driver', (process.env.TEST_LOG as never) ?? 'error')

beforeAll(async () => {
  stack = await startStack({ worker: true })
})
afterAll(async () => stack?.close())

const get = async (path: string): Promise<any> => (await api(stack.url, 'GET', path)).body

/** Freezes etcd for `ms` while `during` runs (it starts once etcd is stopped). */
async function withEtcdPaused(ms: number, during: () => Promise<void>): Promise<void> {
  const pid = stack.servers.etcd.child.pid!
  const until = Date.now() + ms
  process.kill(pid, 'SIGSTOP')
  try {
    await during()
    await eventually(() => (Date.now() >= until ? true : undefined), 'the outage to last', ms + 5000)
  } finally {
    process.kill(pid, 'SIGCONT')
  }
}

async function serve(name: string, resources: string[], calls: string[]): Promise<RunningDriver> {
  const running = await runDriver(
    defineDriver({
      name,
      resources,
      reconcile: (ctx) => void calls.push(`${ctx.event.name}:${ctx.attempt}`),
    }),
    // A delivery limit that a few redeliveries during the outage would exhaust.
    { connections: stack.connections, logger: quiet, maxDeliver: 2, ackWaitMs: 1500 },
  )
  stack.drivers.push(running)
  return running
}

it('a step dispatched during an etcd outage runs once it is over: infrastructure errors burn no deliveries', async () => {
  await api(stack.url, 'POST', '/resource-definitions', {
    name: 'outage-job',
    version: '1',
    schema: { type: 'object' },
  })
  await api(stack.url, 'POST', '/pipelines', {
    name: 'outage-pipe',
    resource: 'outage-job',
    steps: [{ id: 'only', driver: 'outage-runner' }],
  })
  const created = await api(stack.url, 'POST', '/resources', {
    name: 'j1',
    resource: 'outage-job',
    pipeline: 'outage-pipe',
    spec: {},
  })
  expect(created.status).toBe(201)
  await eventually(
    async () => ((await get('/resources/outage-job/j1')).status?.steps?.[0]?.status === 'running' ? true : undefined),
    'the step to be dispatched',
  )
  const calls: string[] = []
  // The driver needs only NATS: it starts, takes the dispatch and claims it while etcd is frozen.
  await withEtcdPaused(8000, async () => void (await serve('outage-runner', [], calls)))
  await eventually(
    async () => ((await get('/resources/outage-job/j1')).status?.pipeline?.status === 'succeeded' ? true : undefined),
    'the run to succeed after the outage',
    40_000,
  )
  expect(calls).toEqual(['j1:1'])
  const step = (await get('/resources/outage-job/j1')).status.steps[0]
  expect([step.attempt, step.executions]).toEqual([1, 1])
  // Waiting on the outage kept the message: it was delivered once, never again.
  const info = await stack.connections.jsm.consumers.info(streams.events, consumers.driverSteps('outage-runner'))
  expect(info.delivered.consumer_seq).toBe(1)
  // JetStream never drops work past a delivery limit: the actor counts executions instead.
  expect(info.config.max_deliver).toBe(-1)
}, 90_000)

it('a resource change delivered during an etcd outage is reconciled once it is over', async () => {
  await api(stack.url, 'POST', '/resource-definitions', {
    name: 'outage-svc',
    version: '1',
    schema: { type: 'object' },
  })
  const calls: string[] = []
  await serve('outage-reconciler', ['outage-svc'], calls)
  await withEtcdPaused(8000, async () => {
    // Accepted before the outage is visible to the gateway's client: the create itself may 503.
    await api(stack.url, 'POST', '/resources', { name: 's1', resource: 'outage-svc', spec: {} }).catch(() => undefined)
  })
  const created = await eventually(async () => {
    const response = await api(stack.url, 'GET', '/resources/outage-svc/s1')
    if (response.status === 200) return response
    const again = await api(stack.url, 'POST', '/resources', { name: 's1', resource: 'outage-svc', spec: {} })
    return again.status === 201 ? again : undefined
  }, 'the resource to exist')
  expect(created.status === 200 || created.status === 201).toBe(true)
  await eventually(
    async () => ((await get('/resources/outage-svc/s1')).status?.state === 'succeeded' ? true : undefined),
    'the reconcile to be recorded',
    40_000,
  )
  expect(calls).toEqual(['s1:1'])
  const info = await stack.connections.jsm.consumers.info(streams.events, consumers.driverChanges('outage-reconciler'))
  expect(info.delivered.consumer_seq).toBeLessThanOrEqual(1)
}, 90_000)
