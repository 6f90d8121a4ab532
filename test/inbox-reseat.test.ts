import { afterAll, beforeAll, expect, it } from 'vitest'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { consumers, partitionOf, streams } from '../runtime/keys.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack({ worker: true })
})
afterAll(async () => stack?.close())

const COUNTER = {
  initial: 'open',
  context: { total: 0 },
  states: { open: { on: { ADD: { actions: { type: 'assign', params: { total: { $inc: 1 } } } } } } },
}

it('a partition whose inbox consumer vanished takes its inbox again: events sent meanwhile are applied', async () => {
  await api(stack.url, 'POST', '/resource-definitions', {
    name: 'reseat-counter',
    version: '1',
    schema: { type: 'object' },
    lifecycle: COUNTER,
  })
  expect(
    (await api(stack.url, 'POST', '/resources', { name: 'c1', resource: 'reseat-counter', spec: {} })).status,
  ).toBe(201)
  const first = await api(stack.url, 'POST', '/resources/reseat-counter/c1/events', { type: 'ADD', id: 'add-1' })
  expect(first.status).toBe(200)

  // The consumer goes away under the worker, as one does with the only NATS node that held it.
  const prefix = consumers.partitionPrefix(partitionOf('reseat-counter', 'c1'))
  const names: string[] = []
  for await (const info of await stack.connections.jsm.consumers.list(streams.inbox))
    if (info.name.startsWith(prefix)) names.push(info.name)
  expect(names.length).toBe(1)
  await stack.connections.jsm.consumers.delete(streams.inbox, names[0]!)

  const second = await api(stack.url, 'POST', '/resources/reseat-counter/c1/events', { type: 'ADD', id: 'add-2' })
  expect([200, 202]).toContain(second.status)
  await eventually(
    async () => {
      const body = (await api(stack.url, 'GET', '/resources/reseat-counter/c1')).body
      return body?.status?.context?.total === 2 ? true : undefined
    },
    'the event sent after the consumer vanished to be applied',
    40_000,
  )
  // Taken again from the floor: the event applied before is not applied twice.
  const again = await api(stack.url, 'POST', '/resources/reseat-counter/c1/events', { type: 'ADD', id: 'add-3' })
  expect(again.status).toBe(200)
  expect(again.body.context.total).toBe(3)
}, 90_000)
