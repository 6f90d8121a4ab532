import { Agent, request } from 'node:http'
import autocannon from 'autocannon'
import { randomUUID } from 'node:crypto'
import type { Connections } from '../runtime/connections.ts'
import { compare, op } from '../runtime/etcd-ops.ts'
import { measure, percentile, round, type Rate } from './stats.ts'
import { apiHeaders } from './processes.ts'
import { defineDriver, runDriver } from '../index.ts'

/** Raw etcd create transactions (compare: absent, put) at a concurrency: the baseline of a create. */
export function rawEtcdCreates(connections: Connections, concurrency: number, durationMs: number): Promise<Rate> {
  const prefix = `/bench/raw/${randomUUID()}/`
  return measure(concurrency, durationMs, (i) =>
    connections.etcd.kv.txn({
      compare: [compare.absent(prefix + i)],
      success: [
        op.put(
          prefix + i,
          JSON.stringify({ name: `r-${i}`, spec: { repository: 'https://example.invalid/repo.git' } }),
        ),
      ],
    }),
  )
}

/** Raw JetStream publishes with a message id, each awaited for its ack, into a stream of their own. */
export async function rawJetStreamPublishes(
  connections: Connections,
  concurrency: number,
  durationMs: number,
): Promise<Rate> {
  const stream = `BENCH_RAW_${concurrency}`
  await connections.jsm.streams.add({ name: stream, subjects: [`bench.raw.${concurrency}`] })
  const body = JSON.stringify({ kind: 'created', name: 'x', spec: { repository: 'https://example.invalid/repo.git' } })
  const run = randomUUID()
  try {
    return await measure(concurrency, durationMs, (i) =>
      connections.js.publish(`bench.raw.${concurrency}`, body, { msgID: `${run}:${i}` }),
    )
  } finally {
    await connections.jsm.streams.delete(stream)
  }
}

/** HTTP creates with unique names through the gateway, driven by autocannon. */
export async function httpCreates(
  url: string,
  type: string,
  connectionsCount: number,
  durationSeconds: number,
): Promise<Rate & { errors: number; non2xx: number }> {
  let counter = 0
  const run = randomUUID().slice(0, 8)
  const result = await autocannon({
    url: `${url}/resources`,
    connections: connectionsCount,
    duration: durationSeconds,
    requests: [
      {
        method: 'POST',
        headers: { ...apiHeaders },
        setupRequest: (request: Record<string, unknown>) => ({
          ...request,
          body: JSON.stringify({
            name: `c${connectionsCount}-${run}-${counter++}`,
            resource: type,
            spec: { repository: 'https://example.invalid/repo.git', branch: 'main' },
          }),
        }),
      },
    ],
  })
  const ok = result['2xx']
  return {
    ops: ok,
    seconds: durationSeconds,
    perSecond: ok / durationSeconds,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  }
}

/** Steady-rate creates over HTTP; measures request start → driver `reconcile` called. */
export async function createToDriverLatency(
  url: string,
  type: string,
  connections: Connections,
  ratePerSecond: number,
  durationMs: number,
): Promise<{ sent: number; received: number; p50Ms: number; p99Ms: number; maxMs: number }> {
  const sentAt = new Map<string, number>()
  const latencies: number[] = []
  const driver = await runDriver(
    defineDriver({
      name: 'bench-receiver',
      resources: [type],
      concurrency: 64,
      reconcile(ctx) {
        const start = sentAt.get(ctx.resource.name)
        if (start !== undefined) latencies.push(performance.now() - start)
        return { success: true }
      },
    }),
    { connections },
  )
  // Steady state: the driver has caught up on what existed before it started.
  await driver.caughtUp
  const run = randomUUID().slice(0, 8)
  const total = Math.round((ratePerSecond * durationMs) / 1000)
  const interval = 1000 / ratePerSecond
  // Keep-alive node:http, far cheaper per request than fetch: the load generator shares the CPU with what it measures.
  const agent = new Agent({ keepAlive: true, maxSockets: 64 })
  const begin = performance.now()
  const requests: Promise<unknown>[] = []
  for (let i = 0; i < total; i++) {
    const due = begin + i * interval
    const wait = due - performance.now()
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait))
    const name = `l-${run}-${i}`
    sentAt.set(name, performance.now())
    requests.push(post(agent, `${url}/resources`, JSON.stringify({ name, resource: type, spec: {} })))
  }
  await Promise.all(requests)
  const deadline = performance.now() + 10_000
  while (latencies.length < total && performance.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 20))
  await driver.close()
  agent.destroy()
  return {
    sent: total,
    received: latencies.length,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.reduce((max, value) => Math.max(max, value), 0),
  }
}

export { round }

/** One POST on a keep-alive agent; resolves when the answer has been read. */
function post(agent: Agent, url: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: { ...apiHeaders, 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}
