import { randomUUID } from 'node:crypto'
import { AckPolicy, DeliverPolicy, type Consumer, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream'
import { nanos } from '@nats-io/transport-node'
import { connectServers, type Connections } from '../../runtime/connections.ts'
import { resolveConfig } from '../../runtime/config.ts'
import { DefinitionStore } from '../../runtime/definition-store.ts'
import { ResourceStore } from '../../runtime/resource-store.ts'
import { Outbox } from '../../runtime/outbox.ts'
import { TxnBatcher } from '../../runtime/txn-batcher.ts'
import { sendToActor } from '../../runtime/inbox.ts'
import { headers, streams, subjects } from '../../runtime/keys.ts'
import { createLogger, type Logger } from '../../runtime/logger.ts'
import { ConveyorError, ensureError } from '../../runtime/errors.ts'
import type { ConveyorEvent, DriverOutcome, Resource } from '../../definitions/objects.ts'
import { isDriverDefinition } from './define.ts'
import { RetryableError, TerminalError } from './errors.ts'
import { RunLog } from './run-log.ts'
import { StepRunner } from './step-runs.ts'
import { eventOf } from './messages.ts'
import { ReplayFollower } from './replay-runs.ts'
import { Semaphore } from '../../runtime/read-batcher.ts'
import { lifecycles } from '../lifecycle/lifecycles.ts'
import { actorInitializer } from '../lifecycle/step.ts'
import type { DriverContext, DriverDefinition, DriverHandle, DriverResult, RunDriverOptions } from './types.ts'

interface ResolvedOptions {
  readonly ackWaitMs: number
  readonly maxDeliver: number
  readonly startFrom: 'new' | 'all'
  readonly concurrency: number
  readonly events: ReadonlySet<string>
  readonly shutdownGraceMs: number
}

const envNumber = (name: string): number | undefined => {
  const value = Number(process.env[name])
  return process.env[name] && Number.isFinite(value) ? value : undefined
}

function resolveOptions(driver: DriverDefinition, options: RunDriverOptions): ResolvedOptions {
  const clamp = (value: number, min: number, max: number): number => Math.min(max, Math.max(min, value))
  return {
    ackWaitMs: clamp(options.ackWaitMs ?? envNumber('CONVEYOR_DRIVER_ACK_WAIT_MS') ?? 30_000, 1000, 3_600_000),
    maxDeliver: clamp(options.maxDeliver ?? envNumber('CONVEYOR_DRIVER_MAX_DELIVER') ?? 5, 1, 100),
    startFrom: options.startFrom ?? 'new',
    concurrency: driver.concurrency ?? 1,
    events: new Set(driver.events ?? ['created', 'updated', 'deleted']),
    shutdownGraceMs: clamp(options.shutdownGraceMs ?? 3000, 0, 600_000),
  }
}

/** Durable consumer names shared by every instance of a driver: resource changes, pipeline steps. */
export const driverConsumerName = (driver: string): string => `driver_${driver}`
export const driverStepConsumerName = (driver: string): string => `driver_${driver}_steps`

/** One filter subject (nats-server 2.9): the exact type when a driver serves one, else every resource change. */
const filterFor = (driver: DriverDefinition): string => (driver.resources.length === 1 ? subjects.resourceChangesOfType(driver.resources[0]!) : subjects.allResourceChanges())

const backoffMs = (attempt: number): number => Math.min(30_000, 500 * 2 ** (attempt - 1))
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

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
  const abort = new AbortController()
  const types = new Set(driver.resources)
  const pulls = new Set<ConsumerMessages>()
  const running = new Semaphore(resolved.concurrency)
  let closing = false
  const steps = new StepRunner({
    connections,
    driver,
    logger,
    maxDeliver: resolved.maxDeliver,
    ackWaitMs: resolved.ackWaitMs,
    shutdown: abort.signal,
    resource: (type, name) => store.get(type, name).catch((error: unknown) => (error instanceof ConveyorError && error.code === 'not-found' ? undefined : Promise.reject(error))),
  })
  const cancels = connections.nats.subscribe(subjects.cancelsOfDriver(driver.name), {
    callback: (error, message) => {
      if (error) return
      try {
        steps.cancel(message.json<ConveyorEvent>())
      } catch {
        // not a cancel event: nothing to abort
      }
    },
  })

  const replays = new ReplayFollower({
    connections,
    driver: driver.name,
    logger,
    running,
    handle: async (message, replay) => {
      const kind = message.headers?.get(headers.kind)
      if (kind === 'step.dispatched') return await steps.handle(message, { force: replay.force })
      if (kind === 'created' || kind === 'updated' || kind === 'deleted') return await handle(message, { force: replay.force })
      await message.ackAck()
    },
  })

  // Per consumer, one loop per unit of concurrency, each pulling a message only when it is free:
  // nothing waits in a client buffer (where its ack_wait would run out) while another instance
  // sits idle. The semaphore keeps both consumers together within `concurrency`.
  const loops: Promise<void>[] = []
  await ensureStepConsumer(connections, driver, resolved)
  const stepConsumer = await connections.js.consumers.get(streams.events, driverStepConsumerName(driver.name))
  for (let i = 0; i < resolved.concurrency; i++) loops.push(slot(stepConsumer, (message) => steps.handle(message)))
  if (driver.resources.length > 0) {
    await ensureConsumer(connections, driver, resolved)
    const consumer = await connections.js.consumers.get(streams.events, driverConsumerName(driver.name))
    for (let i = 0; i < resolved.concurrency; i++) loops.push(slot(consumer, (message) => handle(message)))
  }
  await replays.start()

  async function slot(from: Consumer, handler: (message: JsMsg) => Promise<void>): Promise<void> {
    let failures = 0
    while (!closing) {
      try {
        const pull = await from.fetch({ max_messages: 1, expires: 5000 })
        pulls.add(pull)
        try {
          for await (const message of pull) {
            // Waiting for a free unit of concurrency: keep the message from being redelivered meanwhile.
            const keepAlive = setInterval(() => message.working(), Math.max(500, resolved.ackWaitMs / 3))
            await running.acquire()
            clearInterval(keepAlive)
            try {
              await handler(message)
            } catch (error) {
              if (closing) throw error
              logger.warn('handling a message failed; it will be redelivered', { error: String(error) })
              message.nak(1000)
            } finally {
              running.release()
            }
          }
        } finally {
          pulls.delete(pull)
        }
        failures = 0
      } catch (error) {
        if (closing) return
        failures++
        logger.warn('pulling work failed; retrying', { error: String(error) })
        await sleep(Math.min(5000, 100 * 2 ** failures))
      }
    }
  }

  /** A resource change; `replay` when it comes from a replay (`force`: even if its outcome is recorded). */
  async function handle(message: JsMsg, replay?: { readonly force: boolean }): Promise<void> {
    const event = eventOf(message)
    if (!event) return
    const resource = event.object as Resource | undefined
    // A resource with a pipeline is served through its steps, not by every driver of its type.
    if (!event.type || !types.has(event.type) || !resolved.events.has(event.kind) || !resource || resource.pipeline !== undefined) {
      await message.ackAck()
      return
    }
    const attempt = message.info.deliveryCount
    const runid = event.runid ?? resource.runid
    const log = new RunLog(connections.js, driver.name, runid, resource.pipeline)
    // A replay skips quietly: the skip was logged when the event was first delivered.
    const skipRun = (why: string): Promise<void> => (replay ? message.ackAck().then(() => {}) : skip(message, log, why))
    // A deletion leaves no outcome to check; replaying it could tear down a newer resource of the same name.
    if (replay && !replay.force && event.kind === 'deleted') return void (await message.ackAck())
    try {
      if (event.kind !== 'deleted' && !replay?.force) {
        const view = await store.driverView(event.type, event.name, driver.name)
        if (!view || view.uid !== event.uid) return await skipRun('the resource was deleted or replaced before this run started')
        if (view.revision > event.revision) return await skipRun(`superseded by a newer version of the resource (revision ${view.revision})`)
        if (view.outcome && view.outcome.forRevision >= event.revision) return void (await message.ackAck())
      }
      if (attempt > resolved.maxDeliver) {
        return await finish(message, event, runid, attempt - 1, log, { success: false, message: `gave up: ${resolved.maxDeliver} deliveries without a finished attempt (the driver crashed or exceeded its ack wait)` })
      }
    } catch (error) {
      logger.warn('could not check the run; retrying it later', { error: String(error) })
      message.nak(backoffMs(attempt))
      return
    }
    const result = await reconcile(message, event, resource, runid, attempt, log, replay !== undefined)
    if (result) await finish(message, event, runid, attempt, log, result)
  }

  /** Runs the user's reconcile; undefined means the message was nak'ed for a retry. */
  async function reconcile(message: JsMsg, event: ConveyorEvent, resource: Resource, runid: string, attempt: number, log: RunLog, replayed: boolean): Promise<DriverResult | undefined> {
    const heartbeat = (): void => message.working()
    const timer = setInterval(heartbeat, Math.max(500, resolved.ackWaitMs / 3))
    const context: DriverContext = {
      resource,
      event,
      runid,
      attempt,
      replayed,
      signal: abort.signal,
      log: (...args) => log.write('log', args),
      output: (stream, line) => log.write(stream, [line]),
      heartbeat,
      send: async (sent) => {
        await sendToActor(connections.publisher, event.type!, event.name, { ...sent, id: sent.id ?? randomUUID() })
      },
    }
    try {
      return (await driver.reconcile(context)) ?? { success: true }
    } catch (thrown) {
      const error = ensureError(thrown)
      const retryable = !(error instanceof TerminalError)
      if (retryable && (abort.signal.aborted || attempt < resolved.maxDeliver)) {
        if (!abort.signal.aborted) log.write('log', [`attempt ${attempt} failed, retrying: ${error.message}`])
        await log.flush().catch(() => {})
        message.nak(abort.signal.aborted ? 0 : error instanceof RetryableError && error.retryAfterMs !== undefined ? error.retryAfterMs : backoffMs(attempt))
        return undefined
      }
      return { success: false, message: retryable ? `failed after ${attempt} attempt(s), the delivery limit: ${error.message}` : error.message }
    } finally {
      clearInterval(timer)
    }
  }

  async function skip(message: JsMsg, log: RunLog, why: string): Promise<void> {
    await log.end(false, `skipped: ${why}`)
    await message.ackAck()
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
    // The side effect has happened: keep trying to make its outcome durable rather than letting a
    // redelivery run it again.
    for (let tries = 1; ; tries++) {
      try {
        await log.end(outcome.success, outcome.message)
        if (event.kind === 'deleted') await publishDeletedOutcome(connections, event, driver.name, outcome)
        else await store.recordDriverOutcome(event.type!, event.name, event.uid, driver.name, outcome)
        await message.ackAck()
        return
      } catch (error) {
        if (closing && tries > 3) throw error
        logger.warn('recording the outcome failed; retrying', { error: String(error) })
        message.working()
        await sleep(Math.min(5000, 200 * 2 ** tries))
      }
    }
  }

  let closed: Promise<void> | undefined
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true
      // The grace period starts now: a pull's close() waits for the run it is delivering.
      const grace = setTimeout(() => abort.abort(new Error('driver is shutting down')), resolved.shutdownGraceMs)
      for (const pull of pulls) void pull.close().catch(() => {})
      await Promise.allSettled([...loops, replays.close()])
      cancels.unsubscribe()
      clearTimeout(grace)
      await outbox.close()
      if (ownConnections) await connections.close()
    })()
    return closed
  }
  return { name: driver.name, close, [Symbol.asyncDispose]: close }
}

/** The step consumer delivers every dispatch still in the stream (steps can be dispatched before a driver first starts). */
async function ensureStepConsumer(connections: Connections, driver: DriverDefinition, options: ResolvedOptions): Promise<void> {
  await ensureConsumer(connections, driver, { ...options, startFrom: 'all' }, driverStepConsumerName(driver.name), subjects.stepsOfDriver(driver.name))
}

async function ensureConsumer(connections: Connections, driver: DriverDefinition, options: ResolvedOptions, name = driverConsumerName(driver.name), filter = filterFor(driver)): Promise<void> {
  // One delivery more than the limit: the extra one records "gave up" for a run that never finished.
  const config = {
    durable_name: name,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(options.ackWaitMs),
    max_deliver: options.maxDeliver + 1,
    max_ack_pending: 10_000,
    filter_subject: filter,
  }
  const existing = await connections.jsm.consumers.info(streams.events, name).catch(() => undefined)
  if (!existing) {
    await connections.jsm.consumers.add(streams.events, { ...config, deliver_policy: options.startFrom === 'all' ? DeliverPolicy.All : DeliverPolicy.New })
    return
  }
  const current = existing.config
  if (current.filter_subject === config.filter_subject && current.ack_wait === config.ack_wait && current.max_deliver === config.max_deliver) return
  try {
    await connections.jsm.consumers.update(streams.events, name, { ack_wait: config.ack_wait, max_deliver: config.max_deliver, filter_subject: config.filter_subject })
  } catch (error) {
    throw new ConveyorError(
      'driver-consumer-mismatch',
      `driver ${driver.name} already has a consumer with other settings (filter ${current.filter_subject}, ack wait ${(current.ack_wait ?? 0) / 1e6} ms, max deliver ${current.max_deliver}) and it could not be updated: ${String(error)}. Stop the other instances or delete consumer ${name} of stream ${streams.events}.`,
    )
  }
}

/** A deleted resource has no status to record on: the outcome is only emitted (deduplicated per driver). */
async function publishDeletedOutcome(connections: Connections, event: ConveyorEvent, driver: string, outcome: DriverOutcome): Promise<void> {
  const result: ConveyorEvent = { kind: 'driver.result', uid: event.uid, revision: event.revision, time: outcome.finishedAt, type: event.type!, name: event.name, runid: outcome.runid, driver, outcome }
  await connections.js.publish(subjects.outcome(event.type!, event.name, 'driver.result'), JSON.stringify(result), { msgID: `${event.uid}:${event.revision}:${driver}` })
}
