import { randomUUID } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AckPolicy, DeliverPolicy, type Consumer, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream'
import { nanos } from '@nats-io/transport-node'
import { connectNats, type NatsConnections } from '../../runtime/nats-connection.ts'
import { driverEnvironment, resolveConfig } from '../../runtime/config.ts'
import { consumers, headers, streams, subjects } from '../../runtime/keys.ts'
import { createLogger, type Logger } from '../../runtime/logger.ts'
import { ConveyorError } from '../../runtime/errors.ts'
import { Semaphore } from '../../runtime/semaphore.ts'
import { backoffMs } from '../../runtime/backoff.ts'
import { announceDriver } from '../../runtime/driver-registry.ts'
import type { ConveyorEvent } from '../../definitions/objects.ts'
import { isDriverDefinition } from './define.ts'
import { messageDelivery } from './delivery.ts'
import { eventOf } from './messages.ts'
import { ReplayFollower } from './replay-runs.ts'
import { ResourceRunner } from './resource-runs.ts'
import { StepRunner } from './step-runs.ts'
import { catchUp } from './catch-up.ts'
import { WorkClient } from './work-client.ts'
import { Workspaces } from './workspaces.ts'
import type { DriverRuntime, ResolvedDriverOptions } from './runtime.ts'
import type { DriverDefinition, DriverHandle, RunDriverOptions } from './types.ts'

const VERSION = '0.1.0'

function resolveOptions(driver: DriverDefinition, options: RunDriverOptions): ResolvedDriverOptions {
  const env = driverEnvironment()
  const clamp = (value: number, min: number, max: number): number => Math.min(max, Math.max(min, value))
  return {
    natsUrl: options.natsUrl ?? resolveConfig().natsUrl,
    ackWaitMs: clamp(options.ackWaitMs ?? env.ackWaitMs ?? 30_000, 1000, 3_600_000),
    maxDeliver: clamp(options.maxDeliver ?? env.maxDeliver ?? 5, 1, 100),
    concurrency: driver.concurrency ?? 1,
    events: new Set(driver.events ?? ['created', 'updated', 'deleted']),
    shutdownGraceMs: clamp(options.shutdownGraceMs ?? 3000, 0, 600_000),
    resyncMs: clamp(options.resyncMs ?? 300_000, 1000, 24 * 3600_000),
    instance: options.instance ?? randomUUID().slice(0, 8),
    workspaceRoot: options.workspaceRoot ?? env.workspaceRoot ?? join(tmpdir(), 'conveyor-workspaces'),
  }
}

/** One filter subject (nats-server 2.9): the exact type when a driver serves one, else every resource change. */
const filterFor = (driver: DriverDefinition): string =>
  driver.resources.length === 1 ? subjects.resourceChangesOfType(driver.resources[0]!) : subjects.allResourceChanges()

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** A running driver, with what tests and tools may want to wait for. */
export interface RunningDriver extends DriverHandle {
  /** The instance id this driver announced. */
  readonly instance: string
  /** Resolves when the start-up catch-up has handled every resource it found (with how many). */
  readonly caughtUp: Promise<number>
}

/**
 * Runs a driver with nothing but NATS: announces the instance in the registry, catches up on the
 * resources of its types that have no outcome from it, and follows its durable consumers
 * (instances split the work). Every piece of work is claimed from the resource's actor, and its
 * outcome reported to the actor, before the message is acked.
 */
export async function runDriver(
  driver: DriverDefinition,
  options: RunDriverOptions & { connections?: NatsConnections; logger?: Logger } = {},
): Promise<RunningDriver> {
  if (!isDriverDefinition(driver)) throw new TypeError('runDriver expects a driver made with defineDriver()')
  const resolved = resolveOptions(driver, options)
  const logger = options.logger ?? createLogger(`driver ${driver.name}`)
  const ownConnections = options.connections === undefined
  const nats =
    options.connections ??
    (await connectNats(resolved.natsUrl, {
      name: `driver ${driver.name}`,
      ...(options.natsAuth ? { auth: options.natsAuth } : {}),
    }))
  const abort = new AbortController()
  const closingSignal = new AbortController()
  // Every run in progress listens to both: as many listeners as units of concurrency, and more.
  setMaxListeners(0, abort.signal, closingSignal.signal)
  const pulls = new Set<ConsumerMessages>()
  const workspaces = new Workspaces(resolved.workspaceRoot, logger)
  const runtime: DriverRuntime = {
    driver,
    options: resolved,
    nats,
    client: new WorkClient(nats, driver.name, logger, closingSignal.signal, abort.signal),
    workspaces,
    logger,
    running: new Semaphore(resolved.concurrency),
    shutdown: abort.signal,
  }
  const resources = new ResourceRunner(runtime)
  const steps = new StepRunner(runtime)
  await workspaces.start(nats)
  const cancels = nats.nats.subscribe(subjects.cancelsOfDriver(driver.name), {
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
    connections: nats,
    driver: driver.name,
    instance: resolved.instance,
    logger,
    running: runtime.running,
    handle: async (message, replay) => {
      const event = eventOf(message)
      if (!event) return
      const kind = message.headers?.get(headers.kind) ?? event.kind
      if (kind === 'step.dispatched')
        return await steps.handle(event, messageDelivery(message), { force: replay.force })
      if (kind === 'created' || kind === 'updated' || kind === 'deleted')
        return await resources.handle(event, messageDelivery(message), { force: replay.force })
      await message.ackAck()
    },
  })

  const registration = await announceDriver(
    nats,
    {
      name: driver.name,
      resources: driver.resources,
      instance: resolved.instance,
      version: VERSION,
      concurrency: resolved.concurrency,
    },
    logger,
  )
  let closing = false
  // Per consumer, one loop per unit of concurrency, each pulling a message only when it is free:
  // nothing waits in a client buffer (where its ack_wait would run out) while another instance
  // sits idle. The semaphore keeps both consumers together within `concurrency`.
  const loops: Promise<void>[] = []
  await ensureConsumer(nats, driver, resolved, consumers.driverSteps(driver.name), subjects.stepsOfDriver(driver.name))
  const stepConsumer = await nats.js.consumers.get(streams.events, consumers.driverSteps(driver.name))
  for (let i = 0; i < resolved.concurrency; i++)
    loops.push(slot(stepConsumer, (event, message) => steps.handle(event, messageDelivery(message))))
  let caughtUp: Promise<number> = Promise.resolve(0)
  let resync: NodeJS.Timeout | undefined
  let stopResync = (): Promise<number> => Promise.resolve(0)
  if (driver.resources.length > 0) {
    // The consumer first (from now on), then the list: a change between the two comes both ways and the claim runs it once.
    await ensureConsumer(nats, driver, resolved, consumers.driverChanges(driver.name), filterFor(driver))
    const consumer = await nats.js.consumers.get(streams.events, consumers.driverChanges(driver.name))
    for (let i = 0; i < resolved.concurrency; i++)
      loops.push(slot(consumer, (event, message) => resources.handle(event, messageDelivery(message))))
    const catchingUp = (): Promise<number> =>
      catchUp(runtime, resources, closingSignal.signal).catch((error: unknown) => {
        logger.warn('catching up failed', { error: String(error) })
        return 0
      })
    caughtUp = catchingUp()
    let resyncing: Promise<number> = caughtUp
    resync = setInterval(() => {
      resyncing = resyncing.then(catchingUp)
    }, resolved.resyncMs)
    stopResync = () => resyncing
  }
  await replays.start()

  async function slot(from: Consumer, handler: (event: ConveyorEvent, message: JsMsg) => Promise<void>): Promise<void> {
    let failures = 0
    while (!closing) {
      try {
        const pull = await from.fetch({ max_messages: 1, expires: 5000 })
        pulls.add(pull)
        try {
          for await (const message of pull) {
            // Waiting for a free unit of concurrency: keep the message from being redelivered meanwhile.
            const keepAlive = setInterval(() => message.working(), Math.max(500, resolved.ackWaitMs / 3))
            await runtime.running.acquire()
            clearInterval(keepAlive)
            try {
              const event = eventOf(message)
              if (event) await handler(event, message)
            } catch (error) {
              if (closing) throw error
              logger.warn('handling a message failed; it will be redelivered', { error: String(error) })
              // Redelivered without limit (the consumer has none), so back off as failures repeat.
              message.nak(backoffMs(message.info.deliveryCount, { baseMs: 1000, maxMs: 60_000 }))
            } finally {
              runtime.running.release()
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
        await sleep(backoffMs(failures, { baseMs: 100, maxMs: 5000 }))
      }
    }
  }

  let closed: Promise<void> | undefined
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true
      closingSignal.abort(new Error('driver is closing'))
      // The grace period starts now: a pull's close() waits for the run it is delivering.
      const grace = setTimeout(() => abort.abort(new Error('driver is shutting down')), resolved.shutdownGraceMs)
      for (const pull of pulls) void pull.close().catch(() => {})
      clearInterval(resync)
      await Promise.allSettled([...loops, replays.close(), caughtUp, stopResync()])
      cancels.unsubscribe()
      workspaces.close()
      clearTimeout(grace)
      await registration.close()
      if (ownConnections) await nats.close()
    })()
    return closed
  }
  return { name: driver.name, instance: resolved.instance, caughtUp, close, [Symbol.asyncDispose]: close }
}

async function ensureConsumer(
  nats: NatsConnections,
  driver: DriverDefinition,
  options: ResolvedDriverOptions,
  name: string,
  filter: string,
): Promise<void> {
  // No delivery limit: JetStream would drop the message past it, and a run would never end. The
  // actor counts executions instead, and a driver that gives up reports it (a dead letter).
  const config = {
    durable_name: name,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(options.ackWaitMs),
    max_deliver: -1,
    max_ack_pending: 10_000,
    filter_subject: filter,
  }
  const existing = await nats.jsm.consumers.info(streams.events, name).catch(() => undefined)
  if (!existing) {
    // Steps dispatched before the driver first started are still in the stream; resource changes
    // from before are found by the catch-up instead (level-triggered, whatever the retention).
    await nats.jsm.consumers.add(streams.events, {
      ...config,
      deliver_policy: name === consumers.driverSteps(driver.name) ? DeliverPolicy.All : DeliverPolicy.New,
    })
    return
  }
  const current = existing.config
  if (
    current.filter_subject === config.filter_subject &&
    current.ack_wait === config.ack_wait &&
    current.max_deliver === config.max_deliver
  )
    return
  try {
    await nats.jsm.consumers.update(streams.events, name, {
      ack_wait: config.ack_wait,
      max_deliver: config.max_deliver,
      filter_subject: config.filter_subject,
    })
  } catch (error) {
    throw new ConveyorError(
      'driver-consumer-mismatch',
      `driver ${driver.name} already has a consumer with other settings (filter ${current.filter_subject}, ack wait ${(current.ack_wait ?? 0) / 1e6} ms, max deliver ${current.max_deliver}) and it could not be updated: ${String(error)}. Stop the other instances or delete consumer ${name} of stream ${streams.events}.`,
    )
  }
}
