import { randomUUID } from 'node:crypto'
import type { Watcher } from 'etcd3'
import type { AnyStateMachine } from 'xstate'
import type { Connections } from '../../runtime/connections.ts'
import { TxnBatcher } from '../../runtime/txn-batcher.ts'
import { Outbox } from '../../runtime/outbox.ts'
import { createLogger, type Logger } from '../../runtime/logger.ts'
import { readKeys } from '../../runtime/etcd-ops.ts'
import { ReadBatcher } from '../../runtime/read-batcher.ts'
import { Semaphore } from '../../runtime/semaphore.ts'
import { keys, parseTimerKey } from '../../runtime/keys.ts'
import { DEFAULT_LIFECYCLE } from '../../definitions/lifecycle.ts'
import { DEFAULT_LIFECYCLE_ID, machineFor } from '../lifecycle/machine.ts'
import { systemClock, type Clock } from './clock.ts'
import { Ownership } from './ownership.ts'
import { boundHeap } from './memory.ts'
import { PartitionHost, type HostContext } from './partition-host.ts'
import { RecordCache } from './record-cache.ts'
import { LRUCache } from 'lru-cache'
import { DriverRegistry } from '../../runtime/driver-registry.ts'

/** Options of an actor worker; anything omitted has a production default. */
export interface WorkerOptions {
  readonly connections: Connections
  /** @default a random id */
  readonly id?: string
  readonly logger?: Logger
  /** Injected time for durable timers. @default the system clock */
  readonly clock?: Clock
  /** Lease of the worker's membership and claims: how long a dead worker keeps its partitions. @default 5 */
  readonly leaseTtlSeconds?: number
  /** Actor records kept in memory (least recently used are dropped). @default 10000 */
  readonly maxCachedActors?: number
  /** Actor batches applied at once across all partitions; more wait their turn. @default 512 */
  readonly maxActiveActors?: number
  /** Inbox messages held in memory, not yet applied; the consumers wait beyond it. @default 1024 */
  readonly maxPendingEvents?: number
  /** Old-space heap size past which the worker runs a full collection (checked every 250 ms), keeping RSS near the live set; 0 turns it off. @default 96 */
  readonly heapSoftLimitMb?: number
  /** Timers due within this window are armed in memory; later ones are found by a rescan. @default 60000 */
  readonly timerHorizonMs?: number
  /** Redelivery delay of an inbox message whose worker died. @default 10000 */
  readonly ackWaitMs?: number
}

/** A running actor worker. */
export interface ActorWorker {
  readonly id: string
  /** Partitions this worker owns now, with their fencing tokens. */
  owned(): ReadonlyMap<number, number>
  /** Hands its partitions back so other workers take over at once, then stops. Harmless twice. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/** The worker's options with every default applied, clamped to sane ranges. */
function resolveWorkerOptions(options: WorkerOptions) {
  const clamp = (value: number, min: number, max: number): number => Math.min(max, Math.max(min, value))
  const id = options.id ?? `worker-${randomUUID().slice(0, 8)}`
  return {
    id,
    logger: options.logger ?? createLogger(id),
    clock: options.clock ?? systemClock,
    leaseTtlSeconds: clamp(options.leaseTtlSeconds ?? 5, 1, 600),
    maxCachedActors: clamp(options.maxCachedActors ?? 10_000, 1, 10_000_000),
    maxActiveActors: clamp(options.maxActiveActors ?? 512, 1, 100_000),
    maxPendingEvents: clamp(options.maxPendingEvents ?? 1024, 1, 1_000_000),
    heapSoftLimitMb: clamp(options.heapSoftLimitMb ?? 96, 0, 1_000_000),
    timerHorizonMs: clamp(options.timerHorizonMs ?? 60_000, 1000, 24 * 3600 * 1000),
    ackWaitMs: clamp(options.ackWaitMs ?? 10_000, 1000, 3_600_000),
  }
}

/**
 * Starts an actor worker: it joins the membership, hosts the actors of the partitions it is
 * given (their inboxes and timers), and rebalances when workers join, leave or die.
 */
export async function startWorker(options: WorkerOptions): Promise<ActorWorker> {
  const resolved = resolveWorkerOptions(options)
  const { id, logger } = resolved
  const { connections } = options
  const batcher = new TxnBatcher(connections.etcd)
  const outbox = new Outbox(connections, logger)
  await outbox.start()
  const lifecycles = new Map<string, Record<string, unknown>>([[DEFAULT_LIFECYCLE_ID, DEFAULT_LIFECYCLE]])
  const machine = async (lifecycleId: string): Promise<AnyStateMachine> => {
    let config = lifecycles.get(lifecycleId)
    if (!config) {
      const { values } = await readKeys(connections.etcd, [keys.lifecycle(lifecycleId)])
      if (!values[0]) throw new Error(`lifecycle ${lifecycleId} is missing from etcd`)
      config = JSON.parse(values[0].value) as Record<string, unknown>
      lifecycles.set(lifecycleId, config)
    }
    return machineFor(lifecycleId, config)
  }
  const registry = await DriverRegistry.open(connections, logger)
  const context: HostContext = {
    connections,
    batcher,
    outbox,
    logger,
    clock: resolved.clock,
    machine,
    cache: new RecordCache(resolved.maxCachedActors),
    resources: new LRUCache({ max: 1000 }),
    reads: new ReadBatcher(connections.etcd),
    slots: new Semaphore(resolved.maxActiveActors),
    backlog: new Semaphore(resolved.maxPendingEvents),
    timerHorizonMs: resolved.timerHorizonMs,
    ackWaitMs: resolved.ackWaitMs,
    registry,
  }
  const unboundHeap = resolved.heapSoftLimitMb === 0 ? () => {} : boundHeap(resolved.heapSoftLimitMb)
  const hosts = new Map<number, PartitionHost>()
  const ownership = new Ownership(
    connections.etcd,
    id,
    resolved.leaseTtlSeconds,
    {
      acquire: async (partition, token) => {
        const host = new PartitionHost(partition, token, context)
        hosts.set(partition, host)
        await host.start()
      },
      release: async (partition) => {
        const host = hosts.get(partition)
        hosts.delete(partition)
        await host?.stop()
      },
    },
    logger,
  )

  const timerWatch: Watcher = await connections.etcd.watch().prefix(keys.timers()).create()
  timerWatch.on('put', (kv) => {
    const timer = parseTimerKey(kv.key.toString())
    if (timer) hosts.get(timer.partition)?.scheduleTimer(timer.type, timer.name, timer.dueAt, timer.id)
  })
  timerWatch.on('delete', (kv) => {
    const timer = parseTimerKey(kv.key.toString())
    if (timer) hosts.get(timer.partition)?.timerDeleted(kv.key.toString())
  })
  await ownership.start()

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      unboundHeap()
      await timerWatch.cancel().catch(() => {})
      await ownership.close()
      await outbox.close()
      registry.close()
    })()
    return closing
  }
  return { id, owned: () => ownership.owned, close, [Symbol.asyncDispose]: close }
}
