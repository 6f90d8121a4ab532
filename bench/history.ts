import WebSocket from 'ws'
import { DeliverPolicy } from '@nats-io/jetstream'
import type { Connections } from '../runtime/connections.ts'
import { keys, streams, subjects } from '../runtime/keys.ts'
import { percentile } from './stats.ts'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Publishes `count` synthetic `transitioned` events into one resource's history. */
export async function seedHistory(connections: Connections, type: string, name: string, count: number): Promise<void> {
  const subject = subjects.outcome(type, name, 'transitioned')
  for (let start = 0; start < count; start += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, count - start) }, (_, i) => {
        const seq = start + i + 1
        const event = {
          kind: 'transitioned',
          uid: `bench-${name}`,
          revision: seq,
          time: new Date().toISOString(),
          type,
          name,
          runid: 'r',
          from: 'open',
          to: 'open',
          event: { type: 'INC' },
          seq,
        }
        return connections.publisher.publish(subject, JSON.stringify(event), {
          msgID: `bench-${name}:${seq}`,
          headers: { 'Conveyor-Kind': 'transitioned' },
        })
      }),
    )
  }
}

/** Reads the whole history through `GET …/history`, page after page: events/s. */
export async function readHistoryOverHttp(
  url: string,
  type: string,
  name: string,
): Promise<{ events: number; perSecond: number }> {
  const start = performance.now()
  let events = 0
  for (let after = 0; ;) {
    const response = await fetch(`${url}/resources/${type}/${name}/history?limit=1000${after ? `&after=${after}` : ''}`)
    const page = (await response.json()) as { items: unknown[]; next?: number }
    events += page.items.length
    if (page.next === undefined) break
    after = page.next
  }
  return { events, perSecond: events / ((performance.now() - start) / 1000) }
}

/** The raw baseline: one ordered consumer reading the same subject straight from JetStream. */
export async function readHistoryRaw(
  connections: Connections,
  type: string,
  name: string,
  expected: number,
): Promise<{ events: number; perSecond: number }> {
  const start = performance.now()
  const consumer = await connections.js.consumers.get(streams.events, {
    filter_subjects: subjects.history(type, name),
    deliver_policy: DeliverPolicy.All,
  })
  let events = 0
  const messages = await consumer.consume({ max_messages: 1000 })
  for await (const message of messages) {
    message.json()
    if (++events >= expected) break
  }
  await messages.close()
  return { events, perSecond: events / ((performance.now() - start) / 1000) }
}

interface Watcher {
  readonly socket: WebSocket
  received: number
}

/**
 * `watchers` WebSocket clients watch a type while resource keys are written straight to etcd at
 * `ratePerSecond`; each change carries its write time, so commit → watcher latency is measured
 * for every delivery. The raw baseline is a plain etcd watch on the same keys in the same run.
 */
export async function watchFanOut(
  url: string,
  connections: Connections,
  type: string,
  watchers: number,
  ratePerSecond: number,
  durationMs: number,
) {
  const names = Array.from({ length: 20 }, (_, i) => `fan-${i}`)
  const latencies: number[] = []
  const rawLatencies: number[] = []
  const clients: Watcher[] = []
  for (let i = 0; i < watchers; i++) {
    const socket = new WebSocket(`${url.replace('http://', 'ws://')}/ws`)
    const client: Watcher = { socket, received: 0 }
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString()) as { type: string; object?: { spec?: { sentAt?: number } } }
      if (message.type !== 'change') return
      client.received++
      const sentAt = message.object?.spec?.sentAt
      if (sentAt !== undefined) latencies.push(performance.timeOrigin + performance.now() - sentAt)
    })
    await new Promise((resolve, reject) => {
      socket.once('open', resolve)
      socket.once('error', reject)
    })
    socket.send(JSON.stringify({ op: 'watch', id: 'w', type }))
    clients.push(client)
  }
  const raw = await connections.etcd.watch().prefix(keys.resources(type)).create()
  raw.on('put', (kv) => {
    const sentAt = (JSON.parse(kv.value.toString()) as { spec: { sentAt: number } }).spec.sentAt
    rawLatencies.push(performance.timeOrigin + performance.now() - sentAt)
  })
  await sleep(500)
  const total = Math.round((ratePerSecond * durationMs) / 1000)
  const begin = performance.now()
  const writes: Promise<unknown>[] = []
  for (let i = 0; i < total; i++) {
    const wait = begin + (i * 1000) / ratePerSecond - performance.now()
    if (wait > 1) await sleep(wait)
    const name = names[i % names.length]!
    const now = new Date().toISOString()
    const value = {
      name,
      resource: type,
      spec: { n: i, sentAt: performance.timeOrigin + performance.now() },
      metadata: { uid: `fan-${name}`, version: i + 1, createdAt: now, updatedAt: now, labels: {} },
      run: { runid: 'r' },
    }
    writes.push(connections.etcd.put(keys.resource(type, name)).value(JSON.stringify(value)).exec())
  }
  await Promise.all(writes)
  const expected = total * watchers
  const deadline = performance.now() + 30_000
  while (clients.reduce((sum, c) => sum + c.received, 0) < expected && performance.now() < deadline) await sleep(20)
  const seconds = (performance.now() - begin) / 1000
  await raw.cancel()
  for (const client of clients) client.socket.close()
  const delivered = clients.reduce((sum, c) => sum + c.received, 0)
  return {
    changes: total,
    watchers,
    delivered,
    expected,
    deliveredPerSecond: delivered / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.reduce((max, value) => Math.max(max, value), 0),
    rawEtcdWatch: { p50Ms: percentile(rawLatencies, 50), p99Ms: percentile(rawLatencies, 99) },
  }
}
