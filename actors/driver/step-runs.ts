import type { JsMsg } from '@nats-io/jetstream'
import type { Connections } from '../../runtime/connections.ts'
import { compare, op, readKeys } from '../../runtime/etcd-ops.ts'
import { keys } from '../../runtime/keys.ts'
import { sendToActor } from '../../runtime/inbox.ts'
import type { Logger } from '../../runtime/logger.ts'
import type { ActorRecord } from '../../runtime/actor-record.ts'
import { ensureError } from '../../runtime/errors.ts'
import type { ConveyorEvent, Resource } from '../../definitions/objects.ts'
import type { StepDispatch } from '../../definitions/pipeline.ts'
import { STEP_RESULT, type StepReport } from '../pipeline/run.ts'
import { TerminalError } from './errors.ts'
import { RunLog } from './run-log.ts'
import { eventOf } from './messages.ts'
import type { DriverContext, DriverDefinition } from './types.ts'

/**
 * The idempotency record of one step in one run (`keys.stepRun`): how many times it has started
 * executing (across redeliveries and retries: `ctx.attempt`), and, once a dispatch finished, its
 * report, so a redelivery re-sends the report instead of running the step again.
 */
interface StepRecord {
  readonly executions: number
  readonly dispatch: number
  readonly done: boolean
  readonly report?: StepReport
}

export interface StepRunnerOptions {
  readonly connections: Connections
  readonly driver: DriverDefinition
  readonly logger: Logger
  readonly maxDeliver: number
  readonly ackWaitMs: number
  /** Aborts every execution: the driver is closing. */
  readonly shutdown: AbortSignal
  /** Reads a resource as the API shows it. */
  readonly resource: (type: string, name: string) => Promise<Resource | undefined>
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const executionKey = (event: ConveyorEvent, step: StepDispatch): string => `${event.uid}:${event.runid}:${step.id}:${step.attempt}`

/** Handles `step.dispatched` messages for one driver: exactly-once effect per step dispatch. */
export class StepRunner {
  readonly #options: StepRunnerOptions
  /** Executions in progress (or about to start), so a `step.cancelled` can abort them. */
  readonly #running = new Map<string, Set<AbortController>>()

  constructor(options: StepRunnerOptions) {
    this.#options = options
  }

  /** Aborts the execution a `step.cancelled` event names, if it runs here. */
  cancel(event: ConveyorEvent): void {
    if (!event.step) return
    for (const controller of this.#running.get(executionKey(event, event.step as StepDispatch)) ?? []) controller.abort(new Error('the step was cancelled'))
  }

  /** Registers an execution before anything is read, so a cancel that arrives meanwhile is not lost. */
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
   * A step dispatch. A replay (`replay`) runs nothing unless forced: a dispatch still current is
   * the live consumer's, and a finished one is not run again. With `force` the step runs again
   * whatever its state, but its result is only logged: the run it belonged to has moved on.
   */
  async handle(message: JsMsg, replay?: { readonly force: boolean }): Promise<void> {
    const event = eventOf(message)
    if (!event) return
    const dispatch = event.step as StepDispatch | undefined
    if (event.kind !== 'step.dispatched' || !dispatch || dispatch.driver !== this.#options.driver.name || !event.type || !event.runid || (replay && !replay.force)) return void (await message.ackAck())
    const execution = this.#track(executionKey(event, dispatch))
    try {
      await this.#handleDispatch(message, event, dispatch, execution.controller, replay?.force === true)
    } finally {
      execution.release()
    }
  }

  async #handleDispatch(message: JsMsg, event: ConveyorEvent, dispatch: StepDispatch, controller: AbortController, force: boolean): Promise<void> {
    const { connections, driver, maxDeliver } = this.#options
    const type = event.type!
    const recordKey = keys.stepRun(type, event.name, event.runid!, dispatch.id)
    const { values } = await readKeys(connections.etcd, [keys.resource(type, event.name), keys.actor(type, event.name), recordKey])
    const [resourceValue, actorValue, recordValue] = values
    const actor = actorValue ? (JSON.parse(actorValue.value) as ActorRecord) : undefined
    if (!resourceValue || !actor || actor.uid !== event.uid || actor.runid !== event.runid) return void (await message.ackAck())
    const record = recordValue ? (JSON.parse(recordValue.value) as StepRecord) : undefined
    if (force) return await this.#rerun(message, event, dispatch, (record?.executions ?? 0) + 1, controller)
    if (record?.done && record.dispatch === dispatch.attempt && record.report) {
      // Finished before (the ack or the report got lost): report again, do not run again.
      await this.#report(event, record.report)
      return void (await message.ackAck())
    }
    const current = actor.run?.steps.find((s) => s.id === dispatch.id)
    if (!current || current.status !== 'running' || current.attempt !== dispatch.attempt || controller.signal.aborted) return void (await message.ackAck())
    const executions = (record?.executions ?? 0) + 1
    const fence = [compare.modRevision(keys.resource(type, event.name), resourceValue.modRevision)]
    if (message.info.deliveryCount > maxDeliver) {
      const report: StepReport = {
        step: dispatch.id, attempt: dispatch.attempt, runid: event.runid!, success: false, retryable: false, data: {},
        message: `gave up: ${maxDeliver} deliveries of step ${dispatch.id} without a finished execution (the driver crashed or missed its heartbeats)`,
      }
      await this.#finish(message, event, recordKey, fence, recordValue?.modRevision ?? 0, { executions: executions - 1, dispatch: dispatch.attempt, done: true, report }, undefined)
      return
    }
    const started = await connections.etcd.kv.txn({
      compare: [...fence, compare.modRevision(recordKey, recordValue?.modRevision ?? 0)],
      success: [op.put(recordKey, JSON.stringify({ executions, dispatch: dispatch.attempt, done: false } satisfies StepRecord))],
    })
    if (!started.succeeded) {
      // The resource changed or another instance took this step meanwhile: look again later.
      message.nak(1000)
      return
    }
    const resource = await this.#options.resource(type, event.name)
    if (!resource || resource.metadata.uid !== event.uid) return void (await message.ackAck())
    const log = new RunLog(connections.js, driver.name, event.runid!, event.pipeline, dispatch.id)
    const report = await this.#execute(message, event, dispatch, resource, executions, log, controller)
    if (!report) return
    await this.#finish(message, event, recordKey, fence, Number(started.header.revision), { executions, dispatch: dispatch.attempt, done: true, report }, log)
  }

  /** A forced replay of a step: run it, log the outcome, report nothing. */
  async #rerun(message: JsMsg, event: ConveyorEvent, dispatch: StepDispatch, attempt: number, controller: AbortController): Promise<void> {
    const resource = (await this.#options.resource(event.type!, event.name)) ?? (event.object as Resource | undefined)
    if (!resource) return void (await message.ackAck())
    const log = new RunLog(this.#options.connections.js, this.#options.driver.name, event.runid!, event.pipeline, dispatch.id)
    const report = await this.#execute(message, event, dispatch, resource, attempt, log, controller, true)
    if (!report) return
    log.write('log', [`replayed step ${dispatch.id}: ${report.success ? 'succeeded' : 'failed'}${report.message ? `: ${report.message}` : ''}`])
    await log.flush()
    await message.ackAck()
  }

  /** Runs reconcile for one execution; undefined when the driver is closing (the step is redelivered). */
  async #execute(message: JsMsg, event: ConveyorEvent, dispatch: StepDispatch, resource: Resource, attempt: number, log: RunLog, controller: AbortController, replayed = false): Promise<StepReport | undefined> {
    const { driver, ackWaitMs, shutdown } = this.#options
    const key = executionKey(event, dispatch)
    const onShutdown = (): void => controller.abort(shutdown.reason)
    shutdown.addEventListener('abort', onShutdown)
    const timeout = dispatch.timeoutMs === undefined ? undefined : setTimeout(() => controller.abort(new Error(`timed out after ${dispatch.timeoutMs} ms`)), dispatch.timeoutMs)
    const heartbeat = (): void => message.working()
    const beat = setInterval(heartbeat, Math.max(500, ackWaitMs / 3))
    const base = { step: dispatch.id, attempt: dispatch.attempt, runid: event.runid!, data: {} }
    const context: DriverContext = {
      resource,
      event,
      runid: event.runid!,
      attempt,
      step: dispatch,
      ...(event.pipeline ? { pipeline: event.pipeline } : {}),
      replayed,
      signal: controller.signal,
      log: (...args) => log.write('log', args),
      output: (stream, line) => log.write(stream, [line]),
      heartbeat,
      send: async (sent) => {
        await sendToActor(this.#options.connections.publisher, event.type!, event.name, { ...sent, id: sent.id ?? `${key}:${Math.random().toString(36).slice(2)}` })
      },
    }
    try {
      const result = (await driver.reconcile(context)) ?? { success: true }
      if (shutdown.aborted) return undefined
      if (controller.signal.aborted) return { ...base, success: false, retryable: true, message: String((controller.signal.reason as Error | undefined)?.message ?? 'aborted') }
      return { ...base, success: result.success === true, retryable: false, message: result.message ?? '', data: result.data ?? {} }
    } catch (thrown) {
      if (shutdown.aborted) {
        message.nak(0)
        return undefined
      }
      const error = ensureError(thrown)
      const reason = controller.signal.aborted ? String((controller.signal.reason as Error | undefined)?.message ?? error.message) : error.message
      log.write('log', [`attempt ${attempt} failed: ${reason}`])
      return { ...base, success: false, retryable: !(error instanceof TerminalError), message: reason }
    } finally {
      clearInterval(beat)
      clearTimeout(timeout)
      shutdown.removeEventListener('abort', onShutdown)
    }
  }

  /** Records the report (fenced), lets its log lines land, reports to the actor, and only then acks. */
  async #finish(message: JsMsg, event: ConveyorEvent, recordKey: string, fence: ReturnType<typeof compare.modRevision>[], recordRevision: number, record: StepRecord, log: RunLog | undefined): Promise<void> {
    let saved = false
    for (let tries = 1; ; tries++) {
      try {
        if (!saved) {
          await log?.flush()
          const txn = await this.#options.connections.etcd.kv.txn({ compare: [...fence, compare.modRevision(recordKey, recordRevision)], success: [op.put(recordKey, JSON.stringify(record))] })
          // Lost the fence: the resource was replaced or deleted; nobody waits for this report.
          if (!txn.succeeded) return void (await message.ackAck())
          saved = true
        }
        await this.#report(event, record.report!)
        await message.ackAck()
        return
      } catch (error) {
        if (this.#options.shutdown.aborted && tries > 3) throw error
        this.#options.logger.warn('recording a step result failed; retrying', { step: record.report?.step, error: String(error) })
        message.working()
        await sleep(Math.min(5000, 200 * 2 ** tries))
      }
    }
  }

  async #report(event: ConveyorEvent, report: StepReport): Promise<void> {
    await sendToActor(this.#options.connections.publisher, event.type!, event.name, { type: STEP_RESULT, id: `step-result:${event.runid}:${report.step}:${report.attempt}`, ...report })
  }
}
