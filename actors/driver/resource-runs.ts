import { randomUUID } from 'node:crypto'
import { sendToActor } from '../../runtime/inbox.ts'
import { backoffMs } from '../../runtime/backoff.ts'
import { ensureError } from '../../runtime/errors.ts'
import type { ConveyorEvent, Resource } from '../../definitions/objects.ts'
import type { WorkRef } from '../../definitions/work.ts'
import { holdClaim } from './claim-lease.ts'
import { keepingAlive, type Delivery } from './delivery.ts'
import { RetryableError, TerminalError } from './errors.ts'
import { RunLog } from './run-log.ts'
import { maskDeep, masker, secretValuesOf } from '../../definitions/secret-fields.ts'
import type { DriverRuntime } from './runtime.ts'
import type { DriverContext, DriverResult } from './types.ts'

/** What a reconcile came to: an outcome to report, or a retry (the work is handed back). */
type Ending =
  { readonly kind: 'outcome'; readonly result: DriverResult } | { readonly kind: 'retry'; readonly delayMs: number }

/**
 * Handles resource changes (created, updated, deleted) of the types a driver serves: claims the
 * reconcile of that version from the resource's actor, runs it while renewing the claim, reports
 * the outcome to the actor and only then acks. The actor decides: `done` work is never run again,
 * a `busy` one waits for its holder, a `stale` one (superseded, deleted) is dropped.
 */
export class ResourceRunner {
  readonly #runtime: DriverRuntime
  readonly #types: ReadonlySet<string>

  constructor(runtime: DriverRuntime) {
    this.#runtime = runtime
    this.#types = new Set(runtime.driver.resources)
  }

  /** True for the events this driver reconciles. */
  serves(event: ConveyorEvent): boolean {
    const resource = event.object as Resource | undefined
    return (
      event.type !== undefined &&
      this.#types.has(event.type) &&
      this.#runtime.options.events.has(event.kind) &&
      resource !== undefined &&
      resource.pipeline === undefined
    )
  }

  /** `replay` when the event comes from a replay (`force`: run it even if done, and only log the outcome). */
  async handle(event: ConveyorEvent, delivery: Delivery, replay?: { readonly force: boolean }): Promise<void> {
    if (!this.serves(event)) return await delivery.ack()
    const { driver, options, client } = this.#runtime
    const resource = event.object as Resource
    const type = event.type!
    const runid = event.runid ?? resource.runid
    const deleted = event.kind === 'deleted'
    // The resource names its secret fields: their values never reach the log, nor the outcome message.
    const mask = masker(secretValuesOf(resource))
    const log = new RunLog(this.#runtime.nats.js, driver.name, runid, { signal: this.#runtime.shutdown, mask })
    if (replay?.force) return await this.#forced(event, resource, runid, delivery, log)
    // A deletion replayed without force could tear down a newer resource of the same name.
    if (replay && deleted) return await delivery.ack()
    const work: WorkRef = {
      kind: 'reconcile',
      uid: event.uid,
      runid,
      driver: driver.name,
      revision: event.revision,
      ...(deleted ? { deleted: true } : {}),
    }
    const token = randomUUID()
    const answer = await keepingAlive(
      delivery,
      options.ackWaitMs / 3,
      client.claim(type, event.name, work, token, options.instance, options.ackWaitMs),
    )
    if (answer.result === 'stale') {
      if (!replay) await log.end(false, `skipped: ${answer.reason}`)
      return await delivery.ack()
    }
    if (answer.result === 'done') return await delivery.ack()
    if (answer.result === 'busy') return delivery.retry(Math.max(500, answer.expiresAt - Date.now() + 100))
    // The actor counts executions, whichever way the work arrived (live, catch-up, redelivery).
    if (answer.execution > options.maxDeliver) {
      const message = `gave up: ${options.maxDeliver} executions without a finished attempt (the driver crashed or exceeded its ack wait)`
      return await this.#finish(type, event.name, work, token, delivery, log, { success: false, message })
    }
    const controller = new AbortController()
    const onShutdown = (): void => controller.abort(this.#runtime.shutdown.reason)
    this.#runtime.shutdown.addEventListener('abort', onShutdown)
    const held = holdClaim({
      ...this.#runtime,
      type,
      name: event.name,
      work,
      token,
      leaseMs: options.ackWaitMs,
      delivery,
      lost: (reason) => controller.abort(new Error(`claim lost: ${reason}`)),
    })
    let ending: Ending
    try {
      ending = await this.#reconcile(
        event,
        resource,
        runid,
        answer.execution,
        answer.execution,
        controller.signal,
        held.heartbeat,
        log,
        replay !== undefined,
      )
    } finally {
      held.stop()
      this.#runtime.shutdown.removeEventListener('abort', onShutdown)
    }
    if (this.#runtime.shutdown.aborted || (controller.signal.aborted && ending.kind === 'retry')) {
      // Closing, or the claim was lost: hand the work back; whoever holds it next reports.
      await held.release()
      await log.flush().catch(() => {})
      return delivery.retry(this.#runtime.shutdown.aborted ? 0 : 1000)
    }
    if (ending.kind === 'retry') {
      await held.release()
      await log.flush().catch(() => {})
      return delivery.retry(ending.delayMs)
    }
    await this.#finish(type, event.name, work, token, delivery, log, ending.result)
  }

  async #reconcile(
    event: ConveyorEvent,
    resource: Resource,
    runid: string,
    execution: number,
    delivered: number,
    signal: AbortSignal,
    heartbeat: () => void,
    log: RunLog,
    replayed: boolean,
  ): Promise<Ending> {
    const { driver, options } = this.#runtime
    const context: DriverContext = {
      resource,
      event,
      runid,
      attempt: execution,
      steps: {},
      replayed,
      signal,
      log: (...args) => log.write('log', args),
      output: (stream, line) => log.write(stream, [line]),
      heartbeat,
      send: async (sent) =>
        void (await sendToActor(
          this.#runtime.nats.publisher,
          event.type!,
          event.name,
          { ...sent, id: sent.id ?? randomUUID() },
          { incarnation: event.uid },
        )),
    }
    try {
      return { kind: 'outcome', result: (await driver.reconcile(context)) ?? { success: true } }
    } catch (thrown) {
      const error = ensureError(thrown)
      if (error instanceof TerminalError) return { kind: 'outcome', result: { success: false, message: error.message } }
      if (signal.aborted || delivered < options.maxDeliver) {
        if (!signal.aborted) log.write('log', [`attempt ${execution} failed, retrying: ${error.message}`])
        return {
          kind: 'retry',
          delayMs:
            error instanceof RetryableError && error.retryAfterMs !== undefined
              ? error.retryAfterMs
              : backoffMs(delivered, { baseMs: 500 }),
        }
      }
      return {
        kind: 'outcome',
        result: {
          success: false,
          message: `failed after ${delivered} attempt(s), the delivery limit: ${error.message}`,
        },
      }
    }
  }

  /** Reports the outcome (until the actor answers), ends the run's log, then acks. */
  async #finish(
    type: string,
    name: string,
    work: WorkRef,
    token: string,
    delivery: Delivery,
    log: RunLog,
    result: DriverResult,
  ): Promise<void> {
    const success = result.success === true
    const message = log.mask(result.message ?? '')
    const stored = await keepingAlive(delivery, this.#runtime.options.ackWaitMs / 3, log.flush()).then(
      () => true,
      () => false,
    )
    // Only a stopping driver gives its lines up: hand the work back, whoever holds it next reports.
    if (!stored) return delivery.retry(0)
    await keepingAlive(
      delivery,
      this.#runtime.options.ackWaitMs / 3,
      this.#runtime.client.report(type, name, work, token, {
        success,
        retryable: false,
        message,
        data: maskDeep(result.data ?? {}, (text) => log.mask(text)),
      }),
    )
    await log.end(success, message)
    await delivery.ack()
  }

  /** A forced replay: runs again whatever was recorded, and only logs the outcome. */
  async #forced(
    event: ConveyorEvent,
    resource: Resource,
    runid: string,
    delivery: Delivery,
    log: RunLog,
  ): Promise<void> {
    const controller = new AbortController()
    const onShutdown = (): void => controller.abort(this.#runtime.shutdown.reason)
    this.#runtime.shutdown.addEventListener('abort', onShutdown)
    try {
      const ending = await this.#reconcile(
        event,
        resource,
        runid,
        delivery.attempt,
        delivery.attempt,
        controller.signal,
        () => delivery.working(),
        log,
        true,
      )
      if (ending.kind === 'retry') return delivery.retry(ending.delayMs)
      log.write('log', [
        `replayed: ${ending.result.success ? 'succeeded' : 'failed'}${ending.result.message ? `: ${ending.result.message}` : ''}`,
      ])
      await log.flush()
      await delivery.ack()
    } finally {
      this.#runtime.shutdown.removeEventListener('abort', onShutdown)
    }
  }
}
