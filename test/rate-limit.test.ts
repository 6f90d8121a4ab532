import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { api, startStack, type Stack } from './harness.ts'
import { startGateway, type Gateway } from '../gateway/server.ts'
import { createLogger } from '../runtime/logger.ts'
import { TokenStore } from '../runtime/token-store.ts'

let stack: Stack
let gateway: Gateway
let dir: string
let tokens: TokenStore

beforeAll(async () => {
  stack = await startStack()
  dir = await mkdtemp(join(tmpdir(), 'conveyor-rate-'))
  gateway = await startGateway({
    connections: stack.connections,
    port: 0,
    dataDir: dir,
    logger: createLogger('gateway', 'error'),
    rateLimits: { requestsPerSecond: 5, failedAuthPerMinute: 3 },
  })
  tokens = new TokenStore(stack.connections.etcd)
})
afterAll(async () => {
  await gateway?.close()
  await stack?.close()
  await rm(dir, { recursive: true, force: true })
})

const get = (token: string, path = '/resource-definitions') =>
  api(gateway.url, 'GET', path, undefined, { authorization: `Bearer ${token}` })

it('a token past its requests per second gets 429 with Retry-After; another token is not held back', async () => {
  const greedy = (await tokens.create({ role: 'viewer' })).token
  const other = (await tokens.create({ role: 'viewer' })).token
  const answers = await Promise.all(Array.from({ length: 20 }, () => get(greedy)))
  const limited = answers.filter((answer) => answer.status === 429)
  expect(limited.length).toBeGreaterThan(0)
  expect(answers.filter((answer) => answer.status === 200).length).toBeLessThanOrEqual(5)
  expect(limited[0]!.headers.get('retry-after')).toMatch(/^[1-9]\d*$/)
  expect(limited[0]!.body).toMatchObject({ type: 'urn:conveyor:problem:rate-limited', status: 429 })
  expect(limited[0]!.body.detail).toMatch(/CONVEYOR_RATE_LIMIT/)
  expect((await get(other)).status).toBe(200)
})

it('an address guessing tokens is slowed down; a token that verified is never held back', async () => {
  const good = (await tokens.create({ role: 'viewer' })).token
  expect((await get(good)).status).toBe(200)
  const guesses: number[] = []
  for (let i = 0; i < 5; i++) guesses.push((await get(`cvt_${String(i).padStart(16, '0')}_${'a'.repeat(43)}`)).status)
  expect(guesses).toEqual([401, 401, 401, 429, 429])
  expect((await get(good)).status).toBe(200)
})
