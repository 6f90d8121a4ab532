import { afterAll, beforeAll, expect, it } from 'vitest'
import { defineDriver, runDriver } from 'conveyor'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { createLogger } from '../runtime/logger.ts'
import { consumers, streams } from '../runtime/keys.ts'

let stack: Stack
beforeAll(async () => {
  stack = await startStack({ worker: true })
})
afterAll(async () => stack?.close())

it('a running driver catches up again on its own: a resource change whose message was lost is reconciled', async () => {
  await api(stack.url, 'POST', '/resource-definitions', {
    name: 'resync-svc',
    version: '1',
    schema: { type: 'object' },
  })
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  const calls: string[] = []
  const driver = await runDriver(
    defineDriver({
      name: 'resyncer',
      resources: ['resync-svc'],
      reconcile: async (ctx) => {
        calls.push(ctx.event.name)
        if (ctx.event.name === 'a') await gate
      },
    }),
    { connections: stack.connections, logger: createLogger('driver', 'error'), resyncMs: 1000 },
  )
  stack.drivers.push(driver)
  await driver.caughtUp
  await api(stack.url, 'POST', '/resources', { name: 'a', resource: 'resync-svc', spec: {} })
  await eventually(() => (calls.includes('a') ? true : undefined), 'a to be reconciled')
  await api(stack.url, 'POST', '/resources', { name: 'b', resource: 'resync-svc', spec: {} })
  // b's change waits behind a (one unit of concurrency), and is lost from the stream meanwhile.
  await eventually(async () => {
    const info = await stack.connections.jsm.consumers.info(streams.events, consumers.driverChanges('resyncer'))
    return info.num_pending >= 1 ? true : undefined
  }, "b's change to be pending")
  await stack.connections.jsm.streams.purge(streams.events, { filter: 'conveyor.ev.resource.>' })
  release()
  await eventually(
    async () =>
      (await api(stack.url, 'GET', '/resources/resync-svc/b')).body.status?.state === 'succeeded' ? true : undefined,
    'b to be reconciled by a resync',
    20_000,
  )
  expect(calls.filter((name) => name === 'b')).toEqual(['b'])
}, 60_000)
