import { afterAll, beforeAll, expect, it } from 'vitest'
import { defineDriver, runDriver } from 'conveyor'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { createLogger } from '../runtime/logger.ts'
import { streams, subjects } from '../runtime/keys.ts'

let stack: Stack
beforeAll(async () => {
  stack = await startStack({ worker: true })
})
afterAll(async () => stack?.close())

const get = async (path: string): Promise<any> => (await api(stack.url, 'GET', path)).body

it('a running step whose dispatch was lost is found and dispatched again, and runs once', async () => {
  await api(stack.url, 'POST', '/resource-definitions', { name: 'lost-job', version: '1', schema: { type: 'object' } })
  const pipeline = await api(stack.url, 'POST', '/pipelines', {
    name: 'lost-pipe',
    resource: 'lost-job',
    steps: [{ id: 'only', driver: 'lost-runner', redispatchAfter: '1s' }],
  })
  expect(pipeline.status).toBe(201)
  await api(stack.url, 'POST', '/resources', { name: 'l1', resource: 'lost-job', pipeline: 'lost-pipe', spec: {} })
  await eventually(
    async () => ((await get('/resources/lost-job/l1')).status?.steps?.[0]?.status === 'running' ? true : undefined),
    'the step to be dispatched',
  )
  // The dispatch is lost before any driver took it (a stream that dropped it, say).
  await eventually(
    async () => ((await stack.connections.jsm.streams.info(streams.events)).state.messages > 0 ? true : undefined),
    'the dispatch to be published',
  )
  await stack.connections.jsm.streams.purge(streams.events, { filter: subjects.stepsOfDriver('lost-runner') })
  const calls: string[] = []
  const driver = await runDriver(
    defineDriver({ name: 'lost-runner', resources: [], reconcile: (ctx) => void calls.push(ctx.event.name) }),
    { connections: stack.connections, logger: createLogger('driver', 'error') },
  )
  stack.drivers.push(driver)
  await eventually(
    async () => ((await get('/resources/lost-job/l1')).status?.pipeline?.status === 'succeeded' ? true : undefined),
    'the step to be dispatched again and the run to succeed',
    20_000,
  )
  expect(calls).toEqual(['l1'])
  const actor = await get('/resources/lost-job/l1/actor')
  expect(actor.timers).toEqual([])
}, 60_000)
