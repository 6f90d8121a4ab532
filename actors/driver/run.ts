import { AckPolicy, DeliverPolicy, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream'
import { nanos } from '@nats-io/transport-node'
import { connectServers, type Connections } from '../../runtime/connections.ts'
import { resolveConfig } from '../../runtime/config.ts'
import { DefinitionStore } from '../../runtime/definition-store.ts'
import { ResourceStore } from '../../runtime/resource-store.ts'
import { Outbox } from '../../runtime/outbox.ts'
import { TxnBatcher } from '../../runtime/txn-batcher.ts'
import { streams, subjects } from '../../runtime/keys.ts'
import { createLogger, type Logger } from '../../runtime/logger.ts'
import { ensureError } from '../../runtime/errors.ts'
import type { ConveyorEvent, DriverOutcome, Resource } from '../../definitions/objects.ts'
import { isDriverDefinition } from './define.ts'
import { RetryableError, TerminalError } from './errors.ts'
import { RunLog } from './run-log.ts'
import { lifecycles } from '../lifecycle/lifecycles.ts'
import { actorInitializer } from '../lifecycle/step.ts'
import type { DriverContext, DriverDefinition, DriverHandle, DriverResult, RunDriverOptions } from './types.ts'

interface ResolvedOptions {
  readonly ackWaitMs: number
  readonly maxDeliver: number
  readonly startFrom: 'new' | 'all'
  readonly concurrency: number
  readonly events: ReadonlySet<string>
}

function resolveOptions(driver: DriverDefinition, options: RunDriverOptions): ResolvedOptions {
  const clamp = (value: number, min: number, max: number): number => Math.min(max, Math.max(min, value))
  return {
    ackWaitMs: clamp(options.ackWaitMs ?? 30_000, 1000, 3_600_000),
    maxDeliver: clamp(options.maxDeliver ?? 5, 1, 100),
    startFrom: options.startFrom ?? 'new',
    concurrency: driver.concurrency ?? 1,
    events: new Set(driver.events ?? ['created', 'updated', 'deleted']),
  }
}

/** Durable consumer name shared by every instance of a driver. */
export const driverConsumerName = (driver: string): string => `driver_${driver}`

/** One filter subject (nats-server 2.9): the exact type when a driver serves one, else every resource change. */
const filterFor = (driver: DriverDefinition): string => (driver.resources.length === 1 ? subjects.resourceChangesOfType(driver.resources[0]!) : subjects.allResourceChanges())

const backoffMs = (attempt: number): number => Math.min(30_000, 500 * 2 ** (attempt - 1))

/**
 * Runs a driver: joins its durable pull consumer (instances split the work), runs `reconcile` per
 * event, records the outcome on the resource and emits it, and only then acks.
 */
export async function runDriver(driver: DriverDefinition, options: RunDriverOptions & { connections?: Connections; logger?: Logger } = {}): Promise<DriverHandle> {
  if (!isDriverDefinition(driver)) throw new TypeError('runDriver expects a driver made with defineDriver()')
  const resolved = resolveOptions(driver, options)
  const logger = options.logger ?? createLogger(`driver ${driver.name}`)
  const ownConnections = options.connections === undefined
  const connections =
    options.connections ??
    (await connectServers(resolveConfig({ ...(options.natsUrl ? { natsUrl: options.natsUrl } : {}), ...(options.etcdEndpoints ? { etcdEndpoints: options.etcdEndpoints } : {}) }), { name: `driver ${driver.name}` }))
  const batcher = new TxnBatcher(connections.etcd)
  const outbox = new Outbox(connections, logger)
  const store = new ResourceStore(connections, batcher, outbox, new DefinitionStore(connections, batcher, outbox, lifecycles), actorInitializer)
  await ensureConsumer(connections, driver, resolved)
  const consumer = await connections.js.consumers.get(streams.events, driverConsumerName(driver.name))
  const messages = await consumer.consume({ max_messages: resolved.concurrency })
  const abort = new AbortController()
  const running = new Set<Promise<void>>()
  const types = new Set(driver.resources)

  const loop = (async () => {
    for await (const message of messages) {
      const run = handle(message).catch((error) => logger.error('run failed unexpectedly; it will be redelivered', { error: String(error) }))
      running.add(run)
      void run.finally(() => running.delete(run))
      while (running.size >= resolved.concurrency) await Promise.race(running)
    }
  })()

  async function handle(message: JsMsg): Promise<void> {
    const event = message.json<ConveyorEvent>()
    const resource = event.object as Resource | undefined
    if (!event.type || !types.has(event.type) || !resolved.events.has(event.kind) || !resource) {
      await message.ackAck()
      return
    }
    const attempt = message.info.deliveryCount
    if (event.kind !== 'deleted') {
      const done = await store.driverOutcome(event.type, event.name, event.uid, driver.name)
      if (done && done.forRevision >= event.revision) {
        await message.ackAck()
        return
      }
    }
    const runid = event.runid ?? resource.runid
    const log = new RunLog(connections.js, driver.name, runid, resource.pipeline)
    const heartbeat = (): void => message.working()
    const timer = setInterval(heartbeat, Math.max(500, resolved.ackWaitMs / 3))
    const context: DriverContext = {
      resource,
      event,
      runid,
      attempt,
      replayed: message.headers?.get('Conveyor-Replay') === '1',
      signal: abort.signal,
      log: (...args) => log.write('log', args),
      heartbeat,
    }
    let result: DriverResult
    try {
      result = (await driver.reconcile(context)) ?? { success: true }
    } catch (thrown) {
      const error = ensureError(thrown)
      const retryable = !(error instanceof TerminalError)
      if (retryable && attempt < resolved.maxDeliver && !abort.signal.aborted) {
        clearInterval(timer)
        log.write('log', [`attempt ${attempt} failed, retrying: ${error.message}`])
        await log.flush().catch(() => {})
        message.nak(error instanceof RetryableError && error.retryAfterMs !== undefined ? error.retryAfterMs : backoffMs(attempt))
        return
      }
      if (abort.signal.aborted && retryable) {
        clearInterval(timer)
        message.nak()
        return
      }
      result = { success: false, message: retryable ? `failed after ${attempt} attempt(s), the delivery limit: ${error.message}` : error.message }
    } finally {
      clearInterval(timer)
    }
    await finish(message, event, runid, attempt, log, result)
  }

  async function finish(message: JsMsg, event: ConveyorEvent, runid: string, attempt: number, log: RunLog, result: DriverResult): Promise<void> {
    const outcome: DriverOutcome = {
      success: result.success === true,
      message: result.message ?? '',
      data: result.data ?? {},
      runid,
      forRevision: event.revision,
      attempt,
      finishedAt: new Date().toISOString(),
    }
    await log.end(outcome.success, outcome.message)
    if (event.kind === 'deleted') await publishDeletedOutcome(connections, event, driver.name, outcome)
    else await store.recordDriverOutcome(event.type!, event.name, event.uid, driver.name, outcome)
    await message.ackAck()
  }

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await messages.close()
      await loop.catch(() => {})
      const grace = setTimeout(() => abort.abort(new Error('driver is shutting down')), 10_000)
      await Promise.allSettled([...running])
      clearTimeout(grace)
      await outbox.close()
      if (ownConnections) await connections.close()
    })()
    return closing
  }
  return { name: driver.name, close, [Symbol.asyncDispose]: close }
}

async function ensureConsumer(connections: Connections, driver: DriverDefinition, options: ResolvedOptions): Promise<void> {
  const name = driverConsumerName(driver.name)
  const config = {
    durable_name: name,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(options.ackWaitMs),
    max_deliver: options.maxDeliver,
    max_ack_pending: 10_000,
    filter_subject: filterFor(driver),
  }
  const existing = await connections.jsm.consumers.info(streams.events, name).catch(() => undefined)
  if (!existing) {
    await connections.jsm.consumers.add(streams.events, { ...config, deliver_policy: options.startFrom === 'all' ? DeliverPolicy.All : DeliverPolicy.New })
    return
  }
  const current = existing.config
  if (current.filter_subject !== config.filter_subject || current.ack_wait !== config.ack_wait || current.max_deliver !== config.max_deliver) {
    await connections.jsm.consumers.update(streams.events, name, { ack_wait: config.ack_wait, max_deliver: config.max_deliver, filter_subject: config.filter_subject }).catch(async () => {
      await connections.jsm.consumers.delete(streams.events, name)
      await connections.jsm.consumers.add(streams.events, { ...config, deliver_policy: DeliverPolicy.New })
    })
  }
}

/** A deleted resource has no status to record on: the outcome is only emitted (deduplicated per driver). */
async function publishDeletedOutcome(connections: Connections, event: ConveyorEvent, driver: string, outcome: DriverOutcome): Promise<void> {
  const result: ConveyorEvent = { kind: 'driver.result', uid: event.uid, revision: event.revision, time: outcome.finishedAt, type: event.type!, name: event.name, runid: outcome.runid, driver, outcome }
  await connections.js.publish(subjects.outcome(event.type!, event.name), JSON.stringify(result), { msgID: `${event.uid}:${event.revision}:${driver}` })
}
