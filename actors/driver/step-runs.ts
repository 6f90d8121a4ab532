import { randomUUID } from 'node:crypto'
import { sendToActor } from '../../runtime/inbox.ts'
import { ensureError } from '../../runtime/errors.ts'
import type { ConveyorEvent } from '../../definitions/objects.ts'
import type { StepDispatch } from '../../definitions/pipeline.ts'
import type { ClaimAnswer, ReportRequest, WorkRef } from '../../definitions/work.ts'
import { holdClaim } from './claim-lease.ts'
import { keepingAlive, type Delivery } from './delivery.ts'
import { TerminalError } from './errors.ts'
import { RunLog } from './run-log.ts'
import { maskDeep, masker, secretValuesOf } from '../../definitions/secret-fields.ts'
import type { DriverRuntime } from './runtime.ts'
import type { DriverContext } from './types.ts'

type Go = Extract<ClaimAnswer, { result: 'go' }>
type Outcome = Pick<ReportRequest, 'success' | 'retryable' | 'message' | 'data'>

const executionKey = (uid: string, runid: string, step: string, dispatch: number): string =>
  `${uid}:${runid}:${step}:${dispatch}`
const reasonOf = (signal: AbortSignal, fallback: string): string =>
  String((signal.reason as Error | undefined)?.message ?? fallback)

/**
 * Handles `step.dispatched` messages for one driver: claims the dispatch from the resource's actor
 * (which answers with the step as stored in the run's plan), runs it while renewing the claim,
 * reports the result to the actor, and only then acks. At most one execution of a dispatch runs
 * at a time; a finished one never runs again.
 */
export class StepRunner {
  readonly #runtime: DriverRuntime
  /** Executions in progress, so a `step.cancelled` can abort them. */
  readonly #running = new Map<string, Set<AbortController>>()

  constructor(runtime: DriverRuntime) {
    this.#runtime = runtime
  }

  /** Aborts the execution a `step.cancelled` event names, if it runs here. */
  cancel(event: ConveyorEvent): void {
    if (!event.step || !event.runid) return
    for (const controller of this.#running.get(
      executionKey(event.uid, event.runid, event.step.id, event.step.attempt),
    ) ?? [])
      controller.abort(new Error('the step was cancelled'))
  }

  /** Registers an execution before anything is asked, so a cancel that arrives meanwhile is not lost. */
  #track(key: string): { controller: AbortController; release(): void } {
    const controller = new AbortController()
    let set = this.#running.get(key)
    if (!set) this.#running.set(key, (set = new Set()))
    set.add(controller)
    return {
      controller,
      release: () => {
        set.delete(controller)
        if (set.size === 0) this.#running.delete(key)
      },
    }
  }

  /**
   * A step dispatch. A replay runs nothing unless forced: a dispatch still current is the live
   * consumer's, and a finished one is not run again. With `force` the step runs again as planned,
   * but its result is only logged: the run it belonged to has moved on.
   */
  async handle(event: ConveyorEvent, delivery: Delivery, replay?: { readonly force: boolean }): Promise<void> {
    const dispatch = event.step as StepDispatch | undefined
    const { driver } = this.#runtime
    if (
      event.kind !== 'step.dispatched' ||
      !dispatch ||
      dispatch.driver !== driver.name ||
      !event.type ||
      !event.runid ||
      (replay && !replay.force)
    )
      return await delivery.ack()
    const execution = this.#track(executionKey(event.uid, event.runid, dispatch.id, dispatch.attempt))
    try {
      await this.#claimAndRun(event, dispatch, delivery, execution.controller, replay?.force === true)
    } finally {
      execution.release()
    }
  }

  async #claimAndRun(
    event: ConveyorEvent,
    dispatch: StepDispatch,
    delivery: Delivery,
    controller: AbortController,
    force: boolean,
  ): Promise<void> {
    const { client, options } = this.#runtime
    const type = event.type!
    const work: WorkRef = {
      kind: 'step',
      uid: event.uid,
      runid: event.runid!,
      step: dispatch.id,
      dispatch: dispatch.attempt,
    }
    const token = randomUUID()
    const keepAlive = options.ackWaitMs / 3
    const answer = await keepingAlive(
      delivery,
      keepAlive,
      client.claim(type, event.name, work, token, options.instance, options.ackWaitMs, force),
    )
    if (answer.result === 'stale' || answer.result === 'done') return await delivery.ack()
    if (answer.result === 'busy') return delivery.retry(Math.max(500, answer.expiresAt - Date.now() + 100))
    // The resource names its secret fields: their values never reach the log, nor the step's outcome message.
    const mask = masker(secretValuesOf(answer.resource))
    const log = new RunLog(this.#runtime.nats.js, this.#runtime.driver.name, event.runid!, {
      ...(event.pipeline ? { pipeline: event.pipeline } : {}),
      step: dispatch.id,
      signal: this.#runtime.shutdown,
      mask,
    })
    if (force) {
      const outcome = await this.#execute(event, answer, controller, () => delivery.working(), log, true)
      if (!outcome) return delivery.retry(0)
      log.write('log', [
        `replayed step ${dispatch.id}: ${outcome.success ? 'succeeded' : 'failed'}${outcome.message ? `: ${outcome.message}` : ''}`,
      ])
      await log.flush()
      return await delivery.ack()
    }
    // One execution per dispatch is the norm; each one more was started again after its holder
    // vanished (crashed, or missed its heartbeats). Waiting on an outage starts none.
    if (answer.execution - dispatch.attempt >= options.maxDeliver) {
      const message = `gave up: step ${dispatch.id} was started ${options.maxDeliver} more times than it was dispatched without finishing (the driver crashed or missed its heartbeats)`
      await keepingAlive(
        delivery,
        keepAlive,
        client.report(type, event.name, work, token, { success: false, retryable: false, message, data: {} }),
      )
      return await delivery.ack()
    }
    let lost = false
    const held = holdClaim({
      ...this.#runtime,
      type,
      name: event.name,
      work,
      token,
      leaseMs: options.ackWaitMs,
      delivery,
      lost: (reason) => {
        lost = true
        controller.abort(new Error(`claim lost: ${reason}`))
      },
    })
    let outcome: Outcome | undefined
    let stored = true
    try {
      outcome = await this.#execute(event, answer, controller, held.heartbeat, log, false)
      // The claim stays held while the lines are stored: an outage delays the report, it loses no line.
      if (outcome && !lost)
        stored = await keepingAlive(delivery, keepAlive, log.flush()).then(
          () => true,
          () => false,
        )
    } finally {
      held.stop()
    }
    if (lost) {
      // Another execution owns the step now (or it ended): nobody wants this one's result.
      await log.flush().catch(() => {})
      return await delivery.ack()
    }
    if (!outcome || !stored) {
      // Closing (before the lines were stored, too): give the claim up so another instance takes the step at once.
      await held.release()
      await log.flush().catch(() => {})
      return delivery.retry(0)
    }
    await keepingAlive(
      delivery,
      keepAlive,
      client.report(type, event.name, work, token, {
        ...outcome,
        message: mask(outcome.message),
        data: maskDeep(outcome.data, mask),
      }),
    )
    await delivery.ack()
  }

  /** Runs reconcile for one execution; undefined when the driver is closing (the step goes to another instance). */
  async #execute(
    event: ConveyorEvent,
    go: Go,
    controller: AbortController,
    heartbeat: () => void,
    log: RunLog,
    replayed: boolean,
  ): Promise<Outcome | undefined> {
    const { driver, shutdown } = this.#runtime
    // What runs is what the actor stored, the step of its plan and the resource as stored, never what the message carried.
    const { step, resource } = go
    if (!step || !resource)
      return {
        success: false,
        retryable: true,
        message: step ? 'the resource could not be read' : 'the claim answer carried no stored step',
        data: {},
      }
    const onShutdown = (): void => controller.abort(shutdown.reason)
    shutdown.addEventListener('abort', onShutdown)
    const timeout =
      step.timeoutMs === undefined
        ? undefined
        : setTimeout(() => controller.abort(new Error(`timed out after ${step.timeoutMs} ms`)), step.timeoutMs)
    try {
      const workspace = this.#runtime.workspaces.of(event.runid!)
      let created = false
      const context: DriverContext = {
        // Made on first use: drivers that never look at it leave no directory behind.
        get workspace(): string {
          if (!created) workspace.create()
          created = true
          return workspace.path
        },
        resource,
        event,
        runid: event.runid!,
        attempt: go.execution,
        step,
        steps: go.steps ?? {},
        ...(event.pipeline ? { pipeline: event.pipeline } : {}),
        replayed,
        signal: controller.signal,
        log: (...args) => log.write('log', args),
        output: (stream, line) => log.write(stream, [line]),
        heartbeat,
        send: async (sent) =>
          void (await sendToActor(
            this.#runtime.nats.publisher,
            event.type!,
            event.name,
            {
              ...sent,
              id: sent.id ?? randomUUID(),
            },
            { incarnation: event.uid },
          )),
      }
      const result = (await driver.reconcile(context)) ?? { success: true }
      if (shutdown.aborted) return undefined
      if (controller.signal.aborted)
        return { success: false, retryable: true, message: reasonOf(controller.signal, 'aborted'), data: {} }
      return {
        success: result.success === true,
        retryable: false,
        message: result.message ?? '',
        data: result.data ?? {},
      }
    } catch (thrown) {
      if (shutdown.aborted) return undefined
      const error = ensureError(thrown)
      const reason = controller.signal.aborted ? reasonOf(controller.signal, error.message) : error.message
      log.write('log', [`attempt ${go.execution} failed: ${reason}`])
      return { success: false, retryable: !(error instanceof TerminalError), message: reason, data: {} }
    } finally {
      clearTimeout(timeout)
      shutdown.removeEventListener('abort', onShutdown)
    }
  }
}
