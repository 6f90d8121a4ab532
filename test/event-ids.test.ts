import { afterAll, beforeAll, expect, it } from 'vitest'
import { api, startStack, type Stack } from './harness.ts'
import { sendToActor } from '../runtime/inbox.ts'
import { streams } from '../runtime/keys.ts'

let stack: Stack
beforeAll(async () => {
  stack = await startStack({ worker: true })
  await api(stack.url, 'POST', '/resource-definitions', {
    name: 'incarnated',
    version: '1',
    schema: { type: 'object' },
    lifecycle: { initial: 'a', states: { a: { on: { OLD: 'b', NEW: 'c' } }, b: {}, c: {} } },
  })
})
afterAll(async () => stack?.close())

const inboxMessages = async (): Promise<number> =>
  (await stack.connections.jsm.streams.info(streams.inbox)).state.messages

it('an event for a resource that does not exist is 404 and publishes nothing', async () => {
  const before = await inboxMessages()
  const response = await api(stack.url, 'POST', '/resources/incarnated/nobody/events', { type: 'NEW' })
  expect(response.status).toBe(404)
  expect(await inboxMessages()).toBe(before)
})

it('a resource deleted and created again never receives the earlier incarnation’s pending events', async () => {
  const first = await api(stack.url, 'POST', '/resources', { name: 'again', resource: 'incarnated', spec: {} })
  expect(first.status).toBe(201)
  expect((await api(stack.url, 'DELETE', '/resources/incarnated/again')).status).toBeLessThan(300)
  const second = await api(stack.url, 'POST', '/resources', { name: 'again', resource: 'incarnated', spec: {} })
  expect(second.status).toBe(201)
  expect(second.body.metadata.uid).not.toBe(first.body.metadata.uid)
  // What a sender of the first incarnation had in flight arrives now.
  await sendToActor(
    stack.connections.publisher,
    'incarnated',
    'again',
    { type: 'OLD', id: 'old-one' },
    { incarnation: first.body.metadata.uid },
  )
  const sent = await api(stack.url, 'POST', '/resources/incarnated/again/events', { type: 'NEW' })
  expect(sent.status).toBe(200)
  expect(sent.body.to).toBe('c')
  const history = await api(stack.url, 'GET', '/resources/incarnated/again/history?kind=transitioned')
  expect(history.body.items.map((h: any) => h.event.event.type)).toEqual(['NEW'])
})
