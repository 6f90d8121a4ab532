import { randomUUID } from 'node:crypto'
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream'
import type { Connections } from '../runtime/connections.ts'
import { defineDriver, runDriver, type DriverHandle } from '../index.ts'
import { percentile } from './stats.ts'

export interface Latency {
  readonly count: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
}

const latencyOf = (samples: readonly number[]): Latency => ({
  count: samples.length,
  p50Ms: percentile(samples, 50),
  p99Ms: percentile(samples, 99),
  maxMs: samples.reduce((max, value) => Math.max(max, value), 0),
})
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Raw JetStream: publish (acked) at a steady rate, consumed by a durable pull consumer; publish start → message in hand. */
export async function rawRoundTrip(
  connections: Connections,
  ratePerSecond: number,
  durationMs: number,
): Promise<Latency> {
  const stream = 'BENCH_ROUND_TRIP'
  await connections.jsm.streams.add({ name: stream, subjects: ['bench.trip.>'] })
  await connections.jsm.consumers.add(stream, {
    durable_name: 'trip',
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
  })
  const sentAt = new Map<string, number>()
  const samples: number[] = []
  const consumer = await connections.js.consumers.get(stream, 'trip')
  const messages = await consumer.consume({ max_messages: 64 })
  const consuming = (async () => {
    for await (const message of messages) {
      const start = sentAt.get(message.string())
      if (start !== undefined) samples.push(performance.now() - start)
      message.ack()
    }
  })()
  try {
    const total = Math.round((ratePerSecond * durationMs) / 1000)
    const begin = performance.now()
    const publishes: Promise<unknown>[] = []
    for (let i = 0; i < total; i++) {
      const wait = begin + (i * 1000) / ratePerSecond - performance.now()
      if (wait > 1) await sleep(wait)
      const id = `${i}`
      sentAt.set(id, performance.now())
      publishes.push(connections.js.publish(`bench.trip.${i % 8}`, id, { msgID: `${randomUUID()}` }))
    }
    await Promise.all(publishes)
    const deadline = performance.now() + 10_000
    while (samples.length < total && performance.now() < deadline) await sleep(10)
    return latencyOf(samples)
  } finally {
    await messages.close()
    await consuming
    await connections.jsm.streams.delete(stream)
  }
}

/** Raw etcd: one create transaction (a compare and a put) at a time, at a steady rate; its latency. */
export async function rawEtcdTxn(
  connections: Connections,
  ratePerSecond: number,
  durationMs: number,
): Promise<Latency> {
  const run = randomUUID().slice(0, 8)
  const samples: number[] = []
  const total = Math.round((ratePerSecond * durationMs) / 1000)
  const begin = performance.now()
  for (let i = 0; i < total; i++) {
    const wait = begin + (i * 1000) / ratePerSecond - performance.now()
    if (wait > 1) await sleep(wait)
    const key = `/bench/txn/${run}/${i}`
    const start = performance.now()
    await connections.etcd.if(key, 'Create', '==', 0).then(connections.etcd.put(key).value('x')).commit()
    samples.push(performance.now() - start)
  }
  await connections.etcd.delete().prefix(`/bench/txn/${run}/`)
  return latencyOf(samples)
}

/** Three no-op drivers, one per step of the benchmark pipeline, timing when each step starts and ends. */
export class StepClock {
  readonly created = new Map<string, number>()
  readonly #ended = new Map<string, number>()
  readonly dispatch: number[] = []
  readonly #finished = new Map<string, number>()
  readonly #handles: DriverHandle[] = []

  async start(connections: Connections, steps: readonly string[]): Promise<void> {
    for (const [index, name] of steps.entries()) {
      const previous = index === 0 ? undefined : steps[index - 1]
      this.#handles.push(
        await runDriver(
          defineDriver({
            name,
            resources: [],
            concurrency: 32,
            reconcile: (ctx) => {
              const resource = ctx.resource.name
              // Ready = the resource was created (first step) or the step before it returned.
              const ready =
                previous === undefined ? this.created.get(resource) : this.#ended.get(`${resource}/${previous}`)
              if (ready !== undefined) this.dispatch.push(performance.now() - ready)
              this.#ended.set(`${resource}/${name}`, performance.now())
              if (index === steps.length - 1) this.#finished.set(resource, performance.now())
              return { success: true }
            },
          }),
          { connections },
        ),
      )
    }
  }

  finishedCount(): number {
    return this.#finished.size
  }

  async stop(): Promise<void> {
    for (const handle of this.#handles) await handle.close()
  }
}

/** Creates runs over HTTP at a steady rate; measures step dispatch latency. */
export async function steadyRuns(
  url: string,
  clock: StepClock,
  type: string,
  pipeline: string,
  ratePerSecond: number,
  durationMs: number,
): Promise<{ runs: number; finished: number; dispatch: Latency }> {
  const run = randomUUID().slice(0, 8)
  const total = Math.round((ratePerSecond * durationMs) / 1000)
  const before = clock.finishedCount()
  const firstSample = clock.dispatch.length
  const begin = performance.now()
  const requests: Promise<unknown>[] = []
  for (let i = 0; i < total; i++) {
    const wait = begin + (i * 1000) / ratePerSecond - performance.now()
    if (wait > 1) await sleep(wait)
    const name = `s-${run}-${i}`
    clock.created.set(name, performance.now())
    requests.push(create(url, name, type, pipeline))
  }
  await Promise.all(requests)
  const deadline = performance.now() + 30_000
  while (clock.finishedCount() - before < total && performance.now() < deadline) await sleep(10)
  return {
    runs: total,
    finished: clock.finishedCount() - before,
    dispatch: latencyOf(clock.dispatch.slice(firstSample)),
  }
}

/** Creates `total` runs with `concurrency` HTTP clients as fast as they go; runs/s until the last one finished. */
export async function runThroughput(
  url: string,
  clock: StepClock,
  type: string,
  pipeline: string,
  total: number,
  concurrency: number,
): Promise<{ runs: number; seconds: number; perSecond: number }> {
  const run = randomUUID().slice(0, 8)
  const before = clock.finishedCount()
  const begin = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < total; i = next++) await create(url, `t-${run}-${i}`, type, pipeline)
    }),
  )
  const deadline = performance.now() + 120_000
  while (clock.finishedCount() - before < total && performance.now() < deadline) await sleep(10)
  const seconds = (performance.now() - begin) / 1000
  const finished = clock.finishedCount() - before
  return { runs: finished, seconds, perSecond: finished / seconds }
}

async function create(url: string, name: string, type: string, pipeline: string): Promise<void> {
  const response = await fetch(`${url}/resources`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, resource: type, pipeline, spec: {} }),
  })
  await response.arrayBuffer()
  if (response.status !== 201) throw new Error(`create ${name} answered ${response.status}`)
}
