import { afterAll, beforeAll, expect, it } from 'vitest'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { ConveyorProcess } from './processes.ts'
import { keys, partitionOf } from '../runtime/keys.ts'
import { sendToActor } from '../runtime/inbox.ts'

let stack: Stack
beforeAll(async () => {
  stack = await startStack()
})
afterAll(async () => stack?.close())

const delays = (count: number): Record<string, string> =>
  Object.fromEntries(Array.from({ length: count }, (_, i) => [String(60_000 + i), 'idle']))
const lifecycle = (count: number) => ({
  initial: 'idle',
  states: { idle: { on: { GO: 'many', PING: 'idle' } }, many: { after: delays(count), on: { BACK: 'idle' } } },
})

it('an actor whose commit etcd always refuses is marked stuck, its event kept aside; the others go on and close does not hang', async () => {
  expect(
    (
      await api(stack.url, 'POST', '/resource-definitions', {
        name: 'poison',
        version: '1',
        schema: { type: 'object' },
        lifecycle: lifecycle(3),
      })
    ).status,
  ).toBe(201)
  const bad = 'bad'
  // A neighbour in the same partition: it shares the bad actor's consumer and host.
  let good = 'good-0'
  for (let i = 1; partitionOf('poison', good) !== partitionOf('poison', bad); i++) good = `good-${i}`
  for (const name of [bad, good])
    expect((await api(stack.url, 'POST', '/resources', { name, resource: 'poison', spec: {} })).status).toBe(201)
  // A lifecycle stored before limits were checked at save: entering `many` arms 200 timers, more
  // operations than etcd takes in one transaction.
  const id = (await api(stack.url, 'GET', `/resources/poison/${bad}/actor`)).body.lifecycle.id
  await stack.connections.etcd.put(keys.lifecycle(id)).value(JSON.stringify(lifecycle(200)))
  // Its own process, so it reads that lifecycle from etcd.
  const worker = new ConveyorProcess(['worker'], {
    ...stack.env,
    CONVEYOR_WORKER_LEASE_TTL: '30',
    CONVEYOR_DATA_DIR: '/tmp/conveyor-unused',
  })
  await worker.waitFor(/worker \S+ running/)
  await eventually(
    async () =>
      (await stack.connections.etcd.getAll().prefix(keys.partitionClaims()).count()) === 64 ? true : undefined,
    'the worker to own every partition',
  )

  const go = await api(stack.url, 'POST', `/resources/poison/${bad}/events`, { type: 'GO', id: 'the-go' })
  expect(go.status).toBe(409)
  expect(go.body.type).toBe('urn:conveyor:problem:actor-stuck')
  // Events queued behind it still apply, one by one.
  const uid = (await api(stack.url, 'GET', `/resources/poison/${bad}`)).body.metadata.uid
  await Promise.all(
    // More than the worker's backlog of 1,024 events in flight.
    Array.from({ length: 1100 }, (_, i) =>
      sendToActor(stack.connections.publisher, 'poison', bad, { type: 'PING', id: `ping-${i}` }, { incarnation: uid }),
    ),
  )
  const neighbour = await api(stack.url, 'POST', `/resources/poison/${good}/events`, { type: 'PING' })
  expect(neighbour.status).toBe(200)
  await eventually(
    async () => ((await api(stack.url, 'GET', `/resources/poison/${bad}/actor`)).body.seq >= 1100 ? true : undefined),
    'the pings to apply',
    30_000,
  )

  const actor = (await api(stack.url, 'GET', `/resources/poison/${bad}/actor`)).body
  expect(actor.state).toBe('idle')
  expect(actor.stuck.reason).toMatch(/too many operations/)
  expect(actor.stuck.parked).toBe(1)
  expect((await api(stack.url, 'GET', `/resources/poison/${bad}`)).body.status.stuck.parked).toBe(1)
  const parked = (await api(stack.url, 'GET', `/resources/poison/${bad}/actor/parked`)).body.items
  expect(parked.map((p: any) => p.event.id)).toEqual(['the-go'])

  // Sent again, it is refused again (the lifecycle still arms too many timers) and parked anew.
  const resumed = await api(stack.url, 'POST', `/resources/poison/${bad}/actor/resume`, {})
  expect(resumed.body.resent).toBe(1)
  await eventually(async () => {
    const again = (await api(stack.url, 'GET', `/resources/poison/${bad}/actor/parked`)).body.items
    return again.length === 1 && again[0].seq !== parked[0].seq ? true : undefined
  }, 'the resent event to be parked again')

  const started = Date.now()
  worker.kill('SIGTERM')
  await worker.exited
  expect(Date.now() - started).toBeLessThan(10_000)
}, 90_000)
