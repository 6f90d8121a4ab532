import { randomUUID } from 'node:crypto'
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, type ConsumerConfig } from '@nats-io/jetstream'
import { nanos } from '@nats-io/transport-node'
import { Kvm, type KV } from '@nats-io/kv'
import type { NatsConnections as Connections } from './nats-connection.ts'
import { conflict, invalid, notFound } from './errors.ts'
import { REPLAY_SLOTS, replaySlots } from './driver-access.ts'
import { buckets, streams, subjects } from './keys.ts'

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

/** A replay as stored in the replays bucket (key `{id}`) and as the API shows it. */
export interface Replay {
  readonly id: string
  readonly driver: string
  readonly filter: string
  readonly fromSequence: number
  readonly untilSequence: number
  /** Events in the range that match the filter. */
  readonly total: number
  readonly force: boolean
  readonly status: ReplayStatus
  /** Its durable consumer: one of the driver's replay consumers (`driver_{name}_replay_{slot}`). */
  readonly consumer: string
  /** How long its consumer waits for a driver to fetch from it before the replay expires. */
  readonly idleTimeoutMs: number
  readonly createdAt: string
  /** When it was done, cancelled or found expired. */
  readonly finishedAt?: string
}

/** `running` until the range is delivered (`done`), `DELETE /replay/:id` ends it (`cancelled`), or no driver fetched from it for `idleTimeoutMs` (`expired`). */
export type ReplayStatus = 'running' | 'done' | 'cancelled' | 'expired'

export interface ReplayOptions {
  /** How long the replay's consumer outlives the last driver fetching from it. @default 1 hour */
  readonly idleTimeoutMs?: number
}

const DEFAULT_IDLE_TIMEOUT_MS = 3_600_000

/** The bucket of replays, and the one of per-instance progress counts. */
export async function replayBuckets(connections: Connections): Promise<{ replays: KV; counts: KV }> {
  const kvm = new Kvm(connections.nats)
  const [replays, counts] = await Promise.all([
    kvm.create(buckets.replays, { history: 1, replicas: connections.streamReplicas }),
    kvm.create(buckets.replayCounts, { history: 1, replicas: connections.streamReplicas }),
  ])
  return { replays, counts }
}

/** Records how many events of a replay one driver instance has handled. */
export async function saveReplayCount(
  connections: Connections,
  id: string,
  instance: string,
  count: number,
): Promise<void> {
  const { counts } = await replayBuckets(connections)
  await counts.put(`${id}.${instance}`, String(count))
}

/** The events a replay covers: one resource's, one type's, or every resource's. */
function filterOf(request: ReplayRequest): string {
  if (request.resource !== undefined) return subjects.history(request.type!, request.resource)
  if (request.type !== undefined) return subjects.historyOfType(request.type)
  return subjects.allHistory()
}

/** The sequence of the first event at or after a time (one past the last event when none is). */
async function sequenceAt(connections: Connections, time: string, last: number): Promise<number> {
  const consumer = await connections.js.consumers.get(streams.events, {
    filter_subjects: subjects.allEvents(),
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: time,
  })
  try {
    const first = await consumer.next({ expires: 1000 })
    return first ? first.seq : last + 1
  } finally {
    await consumer.delete().catch(() => false)
  }
}

/** Counts the events matching `filter` in [from, until] by reading them (a consumer's pending count is only an estimate on nats-server 2.9). */
async function countRange(connections: Connections, filter: string, from: number, until: number): Promise<number> {
  const consumer = await connections.js.consumers.get(streams.events, {
    filter_subjects: filter,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: from,
  })
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
 * and records it in the replays bucket, where the driver's instances find it and work through it together.
 */
export async function startReplay(
  connections: Connections,
  request: ReplayRequest,
  options: ReplayOptions = {},
): Promise<Replay> {
  if (request.resource !== undefined && request.type === undefined)
    throw invalid('resource needs type', [{ path: '/type', message: 'is required with resource' }])
  if (request.fromSequence !== undefined && request.since !== undefined)
    throw invalid('give fromSequence or since, not both', [{ path: '/since', message: 'conflicts with fromSequence' }])
  const stream = await connections.jsm.streams.info(streams.events)
  const last = stream.state.last_seq
  const filter = filterOf(request)
  let fromSequence = request.fromSequence ?? stream.state.first_seq
  if (request.since !== undefined) fromSequence = await sequenceAt(connections, request.since, last)
  let untilSequence = last
  if (typeof request.until === 'number') untilSequence = Math.min(last, request.until)
  else if (typeof request.until === 'string')
    untilSequence = Math.min(
      last,
      (await sequenceAt(connections, new Date(Date.parse(request.until) + 1).toISOString(), last)) - 1,
    )
  if (untilSequence < fromSequence)
    throw invalid(`the range is empty: from sequence ${fromSequence} to ${untilSequence}`, [
      { path: request.since !== undefined ? '/since' : '/until', message: 'leaves no event in the range' },
    ])
  const replay: Omit<Replay, 'consumer'> = {
    id: randomUUID().replace(/-/g, '').slice(0, 12),
    driver: request.driver,
    filter,
    fromSequence,
    untilSequence,
    total: await countRange(connections, filter, fromSequence, untilSequence),
    force: request.force === true,
    status: 'running',
    idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    createdAt: new Date().toISOString(),
  }
  const consumer = await takeSlot(connections, replay.driver, replay.id, {
    filter_subject: filter,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: fromSequence,
    ack_wait: nanos(30_000),
    max_deliver: 5,
    // Nobody fetching from it (the driver never came, or every instance went away) for this long:
    // the server removes it, and the replay reads as expired.
    inactive_threshold: nanos(replay.idleTimeoutMs),
  })
  const started: Replay = { ...replay, consumer }
  const { replays } = await replayBuckets(connections)
  await replays.put(started.id, JSON.stringify(started))
  return started
}

/**
 * Creates the replay's consumer under the first free name of the driver's replay consumers (a
 * driver's NATS permissions name each; see `runtime/driver-access.ts`). The replay's id is the
 * consumer's description, so two gateways taking one name at once cannot share it: the second
 * create differs and fails. None free: 409.
 */
async function takeSlot(
  connections: Connections,
  driver: string,
  id: string,
  config: Omit<Partial<ConsumerConfig>, 'durable_name' | 'description'>,
): Promise<string> {
  for (const name of replaySlots(driver)) {
    const taken = await connections.jsm.consumers.info(streams.events, name).then(
      () => true,
      (error: unknown) => !(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound),
    )
    if (taken) continue
    try {
      await connections.jsm.consumers.add(streams.events, { ...config, durable_name: name, description: id })
      return name
    } catch (error) {
      // Taken meanwhile by another replay: try the next name.
      if (error instanceof JetStreamApiError) continue
      throw error
    }
  }
  throw conflict(
    'replays-busy',
    `${REPLAY_SLOTS} replays to driver ${driver} are running: wait until one is done, or cancel one (DELETE /replay/{id})`,
  )
}

/** A replay with how far its driver got: `delivered` of `total`. */
export async function replayProgress(connections: Connections, id: string): Promise<Replay & { delivered: number }> {
  const { replays, counts } = await replayBuckets(connections)
  const entry = await replays.get(id)
  if (!entry || entry.operation !== 'PUT') throw notFound(`replay ${id} not found`)
  const replay = await settled(connections, entry.json<Replay>())
  let delivered = 0
  for await (const key of await counts.keys(`${id}.*`)) {
    const count = await counts.get(key)
    if (count?.operation === 'PUT') delivered += Number(count.string())
  }
  return { ...replay, delivered: Math.min(replay.total, delivered) }
}

export async function listReplays(connections: Connections): Promise<Replay[]> {
  const { replays } = await replayBuckets(connections)
  const items: Replay[] = []
  for await (const key of await replays.keys()) {
    const entry = await replays.get(key)
    if (entry?.operation === 'PUT') items.push(await settled(connections, entry.json<Replay>()))
  }
  return items.sort((a, b) => a.createdAt.localeCompare(b.createdAt))
}

/** A running replay whose consumer the server removed for inactivity is expired: recorded so on first sight. */
async function settled(connections: Connections, replay: Replay): Promise<Replay> {
  if (replay.status !== 'running') return replay
  const exists = await connections.jsm.consumers.info(streams.events, replay.consumer).then(
    () => true,
    (error: unknown) => !(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound),
  )
  if (exists) return replay
  return (await endReplay(connections, replay.id, 'expired')) ?? replay
}

/**
 * Ends a running replay with `status` (once: compare-and-set on the entry's revision, so a replay
 * already done, cancelled or expired keeps what it has) and removes its consumer. Answers the
 * replay as it now stands, or undefined when there is none.
 */
async function endReplay(
  connections: Connections,
  id: string,
  status: Exclude<ReplayStatus, 'running'>,
): Promise<Replay | undefined> {
  const { replays } = await replayBuckets(connections)
  for (let attempt = 0; ; attempt++) {
    const entry = await replays.get(id)
    if (!entry || entry.operation !== 'PUT') return undefined
    const replay = entry.json<Replay>()
    if (replay.status !== 'running') return replay
    const ended: Replay = { ...replay, status, finishedAt: new Date().toISOString() }
    try {
      await replays.update(id, JSON.stringify(ended), entry.revision)
    } catch (error) {
      // Someone else changed it meanwhile: read it again.
      if (attempt < 5) continue
      throw error
    }
    await connections.jsm.consumers.delete(streams.events, replay.consumer).catch(() => false)
    return ended
  }
}

/** Marks a replay done (unless it already ended) and removes its consumer. */
export async function finishReplay(connections: Connections, id: string): Promise<void> {
  await endReplay(connections, id, 'done')
}

/** Cancels a running replay: its consumer goes, and every driver instance stops following it. A replay that already ended is answered as it is. */
export async function cancelReplay(connections: Connections, id: string): Promise<Replay> {
  const replay = await endReplay(connections, id, 'cancelled')
  if (!replay) throw notFound(`replay ${id} not found`)
  return replay
}
