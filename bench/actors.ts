import { readFile } from 'node:fs/promises'
import type { Connections } from '../runtime/connections.ts'
import { compare, op, readPrefix } from '../runtime/etcd-ops.ts'
import { keys, PARTITIONS } from '../runtime/keys.ts'
import { sendToActor } from '../runtime/inbox.ts'
import { TxnBatcher } from '../runtime/txn-batcher.ts'
import { actorInitializer } from '../actors/lifecycle/initializer.ts'
import { lifecycleId } from '../actors/lifecycle/machine.ts'
import { percentile, type Rate } from './stats.ts'

/** The lifecycle the benchmarks drive: every INC is a transition that counts. */
export const COUNTER = {
  initial: 'open',
  context: { count: 0 },
  states: { open: { on: { INC: { actions: { type: 'assign', params: { count: { $inc: 1 } } } } } } },
}

/** Raw etcd compare-and-swap: `loops` loops, each putting its own keys with a compare on their last mod revision. */
export async function rawCas(
  connections: Connections,
  loops: number,
  keyCount: number,
  durationMs: number,
): Promise<Rate> {
  const prefix = `/bench/cas/${Date.now()}/`
  const revisions = new Map<string, number>()
  const latencies: number[] = []
  const started = performance.now()
  await Promise.all(
    Array.from({ length: loops }, async (_, loop) => {
      const mine = Array.from(
        { length: Math.max(1, Math.floor(keyCount / loops)) },
        (_, k) => `${prefix}${loop + k * loops}`,
      )
      for (let i = 0; performance.now() - started < durationMs; i++) {
        const key = mine[i % mine.length]!
        const t0 = performance.now()
        const response = await connections.etcd.kv.txn({
          compare: [compare.modRevision(key, revisions.get(key) ?? 0)],
          success: [op.put(key, JSON.stringify({ count: i }))],
        })
        if (!response.succeeded) throw new Error('raw CAS lost a race it cannot have')
        revisions.set(key, Number(response.header.revision))
        latencies.push(performance.now() - t0)
      }
    }),
  )
  const seconds = (performance.now() - started) / 1000
  return {
    ops: latencies.length,
    seconds,
    perSecond: latencies.length / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
  }
}

export async function waitForPartitions(connections: Connections, workers: number): Promise<void> {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const claims = await readPrefix(connections.etcd, keys.partitionClaims())
    if (claims.values.length === PARTITIONS && new Set(claims.values.map((v) => v.value)).size === workers) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('workers did not take the partitions')
}

/** Writes resources and their initial actors straight into etcd (seeding, not what is measured). */
export async function seedActors(connections: Connections, type: string, names: readonly string[]): Promise<void> {
  const batcher = new TxnBatcher(connections.etcd, { maxInFlight: 8 })
  const now = new Date().toISOString()
  await connections.etcd.put(keys.lifecycle(lifecycleId(COUNTER))).value(JSON.stringify(COUNTER))
  let next = 0
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      for (let i = next++; i < names.length; i = next++) {
        const name = names[i]!
        const uid = `${type}-${name}`
        const { record } = actorInitializer.initial({
          uid,
          type,
          name,
          runid: uid,
          lifecycle: COUNTER,
          now: Date.now(),
        })
        const resource = {
          name,
          resource: type,
          spec: {},
          metadata: { uid, version: 1, createdAt: now, updatedAt: now, labels: {} },
          run: { runid: uid },
        }
        await batcher.commit({
          compares: [],
          ops: [
            op.put(keys.resource(type, name), JSON.stringify(resource)),
            op.put(keys.actor(type, name), JSON.stringify(record)),
          ],
        })
      }
    }),
  )
}

/** Counts `transitioned` events as the workers publish them. */
export function countTransitions(connections: Connections): { count(): number; stop(): void } {
  let count = 0
  const subscription = connections.nats.subscribe('conveyor.ev.outcome.>', {
    callback: (_error, message) => {
      if (message.headers?.get('Conveyor-Kind') === 'transitioned') count++
    },
  })
  return { count: () => count, stop: () => subscription.unsubscribe() }
}

/** Sends `total` INC events spread over `names` with `inFlight` publishes outstanding; resolves when all are applied. */
export async function driveTransitions(
  connections: Connections,
  type: string,
  names: readonly string[],
  total: number,
  inFlight: number,
): Promise<{ perSecond: number; seconds: number }> {
  const counter = countTransitions(connections)
  const start = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      for (let i = next++; i < total; i = next++)
        await sendToActor(connections.publisher, type, names[i % names.length]!, { type: 'INC', id: `e-${start}-${i}` })
    }),
  )
  const deadline = performance.now() + 120_000
  while (counter.count() < total && performance.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 10))
  const seconds = (performance.now() - start) / 1000
  counter.stop()
  if (counter.count() < total) throw new Error(`only ${counter.count()} of ${total} transitions applied`)
  return { perSecond: total / seconds, seconds }
}

export async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
  return kb / 1024
}
