import { afterAll, beforeAll, expect, it } from 'vitest'
import { defineDriver, runDriver } from 'conveyor'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { createLogger } from '../runtime/logger.ts'

let stack: Stack
const quiet = createLogger('driver', (process.env.TEST_LOG as never) ?? 'error')

beforeAll(async () => {
  stack = await startStack({ worker: true })
})
afterAll(async () => stack?.close())

const get = async (path: string): Promise<any> => (await api(stack.url, 'GET', path)).body

it('log lines whose publish was lost with a crashed nats-server are sent again: none missing, none doubled', async () => {
  await api(stack.url, 'POST', '/resource-definitions', { name: 'lo-job', version: '1', schema: { type: 'object' } })
  await api(stack.url, 'POST', '/pipelines', {
    name: 'lo-pipe',
    resource: 'lo-job',
    steps: [{ id: 'only', driver: 'lo-runner' }],
  })
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  let returned = false
  stack.drivers.push(
    await runDriver(
      defineDriver({
        name: 'lo-runner',
        resources: [],
        reconcile: async (ctx) => {
          for (let i = 1; i <= 5; i++) ctx.log(`lo line ${i}`)
          await gate
          for (let i = 6; i <= 10; i++) ctx.log(`lo line ${i}`)
          returned = true
        },
      }),
      { connections: stack.connections, logger: quiet },
    ),
  )
  expect(
    (await api(stack.url, 'POST', '/resources', { name: 'j1', resource: 'lo-job', pipeline: 'lo-pipe', spec: {} }))
      .status,
  ).toBe(201)
  const runid: string = await eventually(
    async () => (await get('/resources/lo-job/j1')).status?.runid as string | undefined,
    'the run to start',
  )
  const messages = async (): Promise<string[]> => {
    const body = await get(`/logs?runid=${runid}&limit=1000`)
    const lines = (Array.isArray(body) ? body : (body?.items ?? [])) as { message: string }[]
    return lines.map((line) => line.message)
  }
  await eventually(async () => ((await messages()).includes('lo line 5') ? true : undefined), 'the first lines')

  // Frozen, the server reads nothing: the next lines sit in the socket and die with it.
  const nats = stack.servers.nats
  process.kill(nats.child.pid!, 'SIGSTOP')
  const sentBefore = stack.connections.nats.stats().outBytes
  release()
  await eventually(
    () => (returned && stack.connections.nats.stats().outBytes > sentBefore + 5 * 60 ? true : undefined),
    'the last lines to be written to the socket',
  )
  process.kill(nats.child.pid!, 'SIGKILL')
  await nats.restart()

  await eventually(
    async () => ((await get('/resources/lo-job/j1')).status?.pipeline?.status === 'succeeded' ? true : undefined),
    'the run to succeed',
    60_000,
  )
  const expected = Array.from({ length: 10 }, (_, i) => `lo line ${i + 1}`)
  await eventually(
    async () => ((await messages()).length >= expected.length ? true : undefined),
    'every line in the index',
    30_000,
  )
  expect(await messages()).toEqual(expected)
}, 120_000)
