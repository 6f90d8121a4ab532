import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream'
import { api, eventually, type JsonResponse } from './harness.ts'
import { startStorageStack, type StorageStack } from './storage-stack.ts'
import { consumers, streams, subjects } from '../runtime/keys.ts'

// Issue 10, item 11: a stream that carries work must refuse a publish when it is full (503 to
// the writer) instead of silently dropping the oldest messages, which may not be processed yet.

const LIMIT = 128 * 1024
const pad = 'p'.repeat(2000)
const lifecycle = {
  initial: 'open',
  context: { n: 0 },
  states: { open: { on: { TICK: { actions: { type: 'assign', params: { n: { $inc: 1 } } } } } } },
}

const expectStreamFull = (response: { status: number; body: any; headers: Headers }, stream: string) => {
  expect(response.status).toBe(503)
  expect(response.headers.get('content-type')).toBe('application/problem+json')
  expect(response.headers.get('retry-after')).toMatch(/^\d+$/)
  expect(response.body).toMatchObject({ status: 503, type: 'urn:conveyor:problem:stream-full' })
  expect(response.body.detail).toContain(stream)
}

describe('a full inbox refuses events and loses none it accepted', () => {
  let stack: StorageStack
  beforeAll(async () => {
    stack = await startStorageStack({
      connect: { retention: { inboxMaxBytes: LIMIT } },
      eventReplyTimeoutMs: 200,
    })
    const definition = { name: 'ticker', schema: { type: 'object' }, lifecycle }
    expect((await api(stack.url, 'POST', '/resource-definitions', definition)).status).toBe(201)
    expect((await api(stack.url, 'POST', '/resources', { name: 't', resource: 'ticker', spec: {} })).status).toBe(201)
  })
  afterAll(async () => stack?.close())

  it('answers 503 naming the inbox once it is full, then applies every accepted event', async () => {
    // No worker runs yet: nothing is applied, so every stored event is work still to do.
    let accepted = 0
    let refused: JsonResponse | undefined
    for (let i = 0; i < 400 && !refused; i++) {
      const response = await api(stack.url, 'POST', '/resources/ticker/t/events', { type: 'TICK', id: `e${i}`, pad })
      if (response.status === 202) accepted++
      else refused = response
    }
    expect(refused).toBeDefined()
    expectStreamFull(refused!, streams.inbox)
    expect(accepted).toBeGreaterThan(10)
    const ready = await api(stack.url, 'GET', '/ready')
    expect(ready.body.streams[streams.inbox]).toMatchObject({ maxBytes: LIMIT, full: true })
    expect(ready.body.streams[streams.inbox].bytes).toBeGreaterThan(LIMIT * 0.9)

    await stack.startWorker()
    await eventually(
      async () => {
        const actor = await api(stack.url, 'GET', '/resources/ticker/t/actor')
        return actor.body.context.n === accepted ? true : undefined
      },
      `the actor to apply all ${accepted} accepted events`,
      60_000,
    )
    // What was applied no longer holds the space: the stream takes events again.
    await eventually(
      async () => {
        const response = await api(stack.url, 'POST', '/resources/ticker/t/events', { type: 'TICK', pad })
        return response.status === 200 ? response : undefined
      },
      'the inbox to take events again once the earlier ones are applied',
      60_000,
    )
    const actor = await api(stack.url, 'GET', '/resources/ticker/t/actor')
    expect(actor.body.context.n).toBe(accepted + 1)
  })
})

describe('a full events stream refuses writes and drops no undelivered change', () => {
  let stack: StorageStack
  beforeAll(async () => {
    stack = await startStorageStack({ connect: { retention: { eventsMaxBytes: LIMIT } } })
    const definition = { name: 'app', schema: { type: 'object' } }
    expect((await api(stack.url, 'POST', '/resource-definitions', definition)).status).toBe(201)
  })
  afterAll(async () => stack?.close())

  it('answers 503 naming the stream before committing, and a driver still gets every accepted change', async () => {
    // A driver's durable consumer that has not fetched anything yet (the driver is down).
    await stack.connections.jsm.consumers.add(streams.events, {
      durable_name: consumers.driverChanges('sleeper'),
      filter_subject: subjects.resourceChangesOfType('app'),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
    })
    const created: string[] = []
    let refused: JsonResponse | undefined
    for (let i = 0; i < 400 && !refused; i++) {
      const name = `a${i}`
      const response = await api(stack.url, 'POST', '/resources', { name, resource: 'app', spec: { pad } })
      if (response.status === 201) created.push(name)
      else refused = response
    }
    expect(refused).toBeDefined()
    expectStreamFull(refused!, streams.events)
    expect(created.length).toBeGreaterThan(10)
    await eventually(
      async () => {
        const ready = await api(stack.url, 'GET', '/ready')
        return ready.body.streams[streams.events].heldBy?.includes(consumers.driverChanges('sleeper'))
          ? true
          : undefined
      },
      '/ready to name the consumer that holds the stream full',
      20_000,
    )
    // Refused means not written.
    const refusedName = `a${created.length}`
    expect((await api(stack.url, 'GET', `/resources/app/${refusedName}`)).status).toBe(404)

    const consumer = await stack.connections.js.consumers.get(streams.events, consumers.driverChanges('sleeper'))
    const seen = new Set<string>()
    await eventually(
      async () => {
        const batch = await consumer.fetch({ max_messages: 100, expires: 1000 })
        for await (const message of batch) {
          seen.add((message.json() as { name: string }).name)
          message.ack()
        }
        return created.every((name) => seen.has(name)) ? true : undefined
      },
      'the driver consumer to receive every accepted change',
      60_000,
    )
    await eventually(
      async () => {
        const response = await api(stack.url, 'POST', '/resources', { name: 'later', resource: 'app', spec: { pad } })
        return response.status === 201 ? true : undefined
      },
      'writes to be accepted again once the driver has caught up',
      60_000,
    )
  })
})
