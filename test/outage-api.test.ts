import { afterAll, beforeAll, expect, it } from 'vitest'
import { api, eventually, startStack, type Stack } from './harness.ts'

let stack: Stack
beforeAll(async () => {
  stack = await startStack({ worker: true })
  await api(stack.url, 'POST', '/resource-definitions', { name: 'svc', version: '1', schema: { type: 'object' } })
  await api(stack.url, 'POST', '/resources', { name: 'one', resource: 'svc', spec: {} })
})
afterAll(async () => stack?.close())

/** Each call during the outage: its status, how long it took, and its Retry-After. */
async function probe(method: string, path: string, body?: unknown) {
  const started = Date.now()
  const response = await fetch(`${stack.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    ...(body ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(30_000),
  })
  await response.text()
  return { path, status: response.status, ms: Date.now() - started, retryAfter: response.headers.get('retry-after') }
}

it('while etcd is frozen the API answers 503 with Retry-After in bounded time, never 500 and never a hang', async () => {
  const pid = stack.servers.etcd.child.pid!
  process.kill(pid, 'SIGSTOP')
  let results
  try {
    results = await Promise.all([
      probe('GET', '/resources/svc/one'),
      probe('GET', '/resources/svc'),
      probe('POST', '/resources', { name: 'two', resource: 'svc', spec: {} }),
      probe('POST', '/resources/svc/one/events', { type: 'NOPE' }),
      probe('GET', '/resource-definitions'),
      probe('GET', '/ready'),
    ])
  } finally {
    process.kill(pid, 'SIGCONT')
  }
  for (const result of results) {
    expect(result, JSON.stringify(result)).toMatchObject({ status: 503 })
    // A readiness probe just says not ready; every API answer says when to come back.
    if (result.path !== '/ready') expect(String(result.retryAfter), JSON.stringify(result)).toMatch(/^\d+$/)
    expect(result.ms, JSON.stringify(result)).toBeLessThan(15_000)
  }
  // And once it is back, the same calls work.
  await eventually(
    async () => ((await api(stack.url, 'GET', '/resources/svc/one')).status === 200 ? true : undefined),
    'the API to answer again',
    20_000,
  )
}, 60_000)

it('while NATS is frozen the API answers in bounded time: what needs only etcd works, the rest is 503 with Retry-After', async () => {
  const pid = stack.servers.nats.child.pid!
  process.kill(pid, 'SIGSTOP')
  let results
  try {
    results = await Promise.all([
      probe('GET', '/resources/svc/one'),
      probe('POST', '/resources', { name: 'three', resource: 'svc', spec: {} }),
      probe('POST', '/resources/svc/one/events', { type: 'NOPE' }),
      probe('GET', '/resources/svc/one/history'),
    ])
  } finally {
    process.kill(pid, 'SIGCONT')
  }
  for (const result of results) {
    expect([200, 201, 202, 503], JSON.stringify(result)).toContain(result.status)
    if (result.status === 503) expect(String(result.retryAfter), JSON.stringify(result)).toMatch(/^\d+$/)
    expect(result.ms, JSON.stringify(result)).toBeLessThan(15_000)
  }
  // A create the gateway accepted is not lost: its event reaches the stream once NATS is back.
  if (results[1]!.status === 201)
    await eventually(
      async () => ((await api(stack.url, 'GET', '/resources/svc/three')).status === 200 ? true : undefined),
      'the accepted create',
    )
}, 60_000)
