import { randomUUID } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Consumer, ConsumerMessages, JsMsg } from '@nats-io/jetstream'
import { connectNats, type NatsConnections } from '../../runtime/nats-connection.ts'
import { driverEnvironment, resolveConfig } from '../../runtime/config.ts'
import { headers, streams, subjects } from '../../runtime/keys.ts'
import { driverConsumers, type DriverScope } from '../../runtime/driver-access.ts'
import { ensureDriverConsumer } from '../../runtime/driver-consumers.ts'
import type { NatsAuth } from '../../runtime/config.ts'
import { fetchDriverIdentity } from './identity.ts'
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

/** The TLS part of NATS credentials (a driver identity brings its own user and password). */
const tlsOf = (auth: NatsAuth | undefined): NatsAuth =>
  auth?.tlsCaFile
    ? { tlsCaFile: auth.tlsCaFile }
    : process.env.CONVEYOR_NATS_TLS_CA
      ? { tlsCaFile: process.env.CONVEYOR_NATS_TLS_CA }
      : {}

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
  // With a driver token, the gateway issues this driver's NATS identity and makes its consumers.
  const identitySource = options.connections ? undefined : (options.identity ?? driverEnvironment().identity)
  const identity = identitySource
    ? await fetchDriverIdentity(identitySource, driver.name, {
        resources: driver.resources,
        ackWaitMs: resolved.ackWaitMs,
      })
    : undefined
  const scope: DriverScope = { driver: driver.name, types: identity?.types }
  const specs = driverConsumers(scope, driver.resources)
  if (typeof specs === 'string') throw new ConveyorError('driver-scope', specs, { kind: 'forbidden' })
  const nats =
    options.connections ??
    (await connectNats(resolved.natsUrl, {
      name: `driver ${driver.name}`,
      ...(identity
        ? {
            auth: { user: identity.user, password: identity.password, ...tlsOf(options.natsAuth) },
            inboxPrefix: identity.inboxPrefix,
            createStreams: false,
          }
        : options.natsAuth
          ? { auth: options.natsAuth }
          : {}),
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
  await workspaces.start(nats, scope.types)
  const cancelSubjects = scope.types
    ? scope.types.map((type) => subjects.cancelsOfDriverAndType(driver.name, type))
    : [subjects.cancelsOfDriver(driver.name)]
  const cancels = cancelSubjects.map((subject) =>
    nats.nats.subscribe(subject, {
      callback: (error, message) => {
        if (error) return
        try {
          steps.cancel(message.json<ConveyorEvent>())
        } catch {
          // not a cancel event: nothing to abort
        }
      },
    }),
  )
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
  // The consumers first (changes from now on), then the list: a change between the two comes both
  // ways and the claim runs it once. A driver identity binds the consumers the gateway made.
  for (const spec of specs) {
    if (!identity) await ensureDriverConsumer(nats.jsm, driver.name, spec, resolved.ackWaitMs)
    const consumer = await nats.js.consumers.get(streams.events, spec.name)
    const handle = spec.serves === 'steps' ? steps : resources
    for (let i = 0; i < resolved.concurrency; i++)
      loops.push(slot(consumer, (event, message) => handle.handle(event, messageDelivery(message))))
  }
  let caughtUp: Promise<number> = Promise.resolve(0)
  let resync: NodeJS.Timeout | undefined
  let stopResync = (): Promise<number> => Promise.resolve(0)
  if (driver.resources.length > 0) {
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
      for (const subscription of cancels) subscription.unsubscribe()
      workspaces.close()
      clearTimeout(grace)
      await registration.close()
      if (ownConnections) await nats.close()
    })()
    return closed
  }
  return { name: driver.name, instance: resolved.instance, caughtUp, close, [Symbol.asyncDispose]: close }
}
