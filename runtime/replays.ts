import { randomUUID } from 'node:crypto'
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream'
import { nanos } from '@nats-io/transport-node'
import type { Connections } from './connections.ts'
import { compare, op, readKeys, readPrefix } from './etcd-ops.ts'
import { invalid, notFound } from './errors.ts'
import { keys, partitionName, partitionOf, streams } from './keys.ts'

/** What a replay re-delivers: a driver, a slice of the event stream, and whether finished work runs again. */
export interface ReplayRequest {
  readonly driver: string
  readonly type?: string
  readonly resource?: string
  readonly fromSequence?: number
  /** ISO time: the first event at or after it. */
  readonly since?: string
  /** A stream sequence, or an ISO time: the last event at or before it. */
  readonly until?: number | string
  /** Run completed work again (still without reporting it to the run it belonged to). @default false */
  readonly force?: boolean
}

/** A replay as stored in etcd (`/conveyor/replays/{id}`) and as the API shows it. */
export interface Replay {
  readonly id: string
  readonly driver: string
  readonly filter: string
  readonly fromSequence: number
  readonly untilSequence: number
  /** Events in the range that match the filter. */
  readonly total: number
  readonly force: boolean
  readonly status: 'running' | 'done'
  readonly createdAt: string
  readonly finishedAt?: string
}

export const replayConsumerName = (id: string): string => `replay_${id}`

/** The events a replay covers: one resource's, one type's, or every resource's. */
function filterOf(request: ReplayRequest): string {
  if (request.resource !== undefined) return `conveyor.ev.*.${partitionName(partitionOf(request.type!, request.resource))}.${request.type}.${request.resource}.*`
  if (request.type !== undefined) return `conveyor.ev.*.*.${request.type}.*.*`
  return 'conveyor.ev.*.*.*.*.*'
}

/** The sequence of the first event at or after a time (one past the last event when none is). */
async function sequenceAt(connections: Connections, time: string, last: number): Promise<number> {
  const consumer = await connections.js.consumers.get(streams.events, { filter_subjects: 'conveyor.ev.>', deliver_policy: DeliverPolicy.StartTime, opt_start_time: time })
  try {
    const first = await consumer.next({ expires: 1000 })
    return first ? first.seq : last + 1
  } finally {
    await consumer.delete().catch(() => false)
  }
}

/** Counts the events matching `filter` in [from, until] by reading them (a consumer's pending count is only an estimate on nats-server 2.9). */
async function countRange(connections: Connections, filter: string, from: number, until: number): Promise<number> {
  const consumer = await connections.js.consumers.get(streams.events, { filter_subjects: filter, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from })
  let count = 0
  try {
    for (;;) {
      const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 })
      let got = 0
      let done = false
      for await (const message of batch) {
        got++
        if (message.seq > until) done = true
        else count++
        if (message.seq >= until) done = true
        if (done) break
      }
      if (done || got === 0) return count
    }
  } finally {
    await consumer.delete().catch(() => false)
  }
}

/**
 * Starts a replay: resolves its range to stream sequences, counts it, creates its durable consumer
 * and records it in etcd, where the driver's instances find it and work through it together.
 */
export async function startReplay(connections: Connections, request: ReplayRequest): Promise<Replay> {
  if (request.resource !== undefined && request.type === undefined) throw invalid('resource needs type', [{ path: '/type', message: 'is required with resource' }])
  if (request.fromSequence !== undefined && request.since !== undefined) throw invalid('give fromSequence or since, not both', [{ path: '/since', message: 'conflicts with fromSequence' }])
  const stream = await connections.jsm.streams.info(streams.events)
  const last = stream.state.last_seq
  const filter = filterOf(request)
  let fromSequence = request.fromSequence ?? stream.state.first_seq
  if (request.since !== undefined) fromSequence = await sequenceAt(connections, request.since, last)
  let untilSequence = last
  if (typeof request.until === 'number') untilSequence = Math.min(last, request.until)
  else if (typeof request.until === 'string') untilSequence = Math.min(last, (await sequenceAt(connections, new Date(Date.parse(request.until) + 1).toISOString(), last)) - 1)
  if (untilSequence < fromSequence) throw invalid(`the range is empty: from sequence ${fromSequence} to ${untilSequence}`, [{ path: request.since !== undefined ? '/since' : '/until', message: 'leaves no event in the range' }])
  const replay: Replay = {
    id: randomUUID().replace(/-/g, '').slice(0, 12),
    driver: request.driver,
    filter,
    fromSequence,
    untilSequence,
    total: await countRange(connections, filter, fromSequence, untilSequence),
    force: request.force === true,
    status: 'running',
    createdAt: new Date().toISOString(),
  }
  await connections.jsm.consumers.add(streams.events, {
    durable_name: replayConsumerName(replay.id),
    filter_subject: filter,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: fromSequence,
    ack_wait: nanos(30_000),
    max_deliver: 5,
  })
  await connections.etcd.put(keys.replay(replay.id)).value(JSON.stringify(replay))
  return replay
}

/** A replay with how far its driver got: `delivered` of `total`. */
export async function replayProgress(connections: Connections, id: string): Promise<Replay & { delivered: number }> {
  const { values } = await readKeys(connections.etcd, [keys.replay(id)])
  if (!values[0]) throw notFound(`replay ${id} not found`)
  const replay = JSON.parse(values[0].value) as Replay
  const counts = await readPrefix(connections.etcd, keys.replayCounts(id))
  const delivered = counts.values.reduce((sum, v) => sum + Number(v.value), 0)
  return { ...replay, delivered: Math.min(replay.total, delivered) }
}

export async function listReplays(connections: Connections): Promise<Replay[]> {
  const { values } = await readPrefix(connections.etcd, keys.replays())
  return values.map((v) => JSON.parse(v.value) as Replay)
}

/** Marks a replay done (once) and removes its consumer. */
export async function finishReplay(connections: Connections, id: string): Promise<void> {
  const { values } = await readKeys(connections.etcd, [keys.replay(id)])
  const stored = values[0]
  if (!stored) return
  const replay = JSON.parse(stored.value) as Replay
  if (replay.status === 'done') return
  const done: Replay = { ...replay, status: 'done', finishedAt: new Date().toISOString() }
  await connections.etcd.kv.txn({ compare: [compare.modRevision(keys.replay(id), stored.modRevision)], success: [op.put(keys.replay(id), JSON.stringify(done))] })
  await connections.jsm.consumers.delete(streams.events, replayConsumerName(id)).catch(() => false)
}
