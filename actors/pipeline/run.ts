import type { DurableTimer } from '../../runtime/actor-record.ts'
import {
  DEFAULT_REDISPATCH_MS,
  type PipelineRun,
  type RunStatus,
  type StepPlan,
  type StepRun,
} from '../../definitions/pipeline.ts'

/** What a driver reported for one dispatch of a step (taken from its `conveyor.report`). */
export interface StepReport {
  readonly step: string
  readonly attempt: number
  /** The run the dispatch belonged to: a report for an earlier run of the resource changes nothing. */
  readonly runid: string
  readonly success: boolean
  /** False for `TerminalError` and `{success: false}`: no retry. */
  readonly retryable: boolean
  readonly message: string
  readonly data: Record<string, unknown>
}

/** What a change of the run asks the actor host to do once the change is committed. */
export interface RunEffects {
  /** Steps to send to their drivers now (their `attempt` is the dispatch number). */
  readonly dispatched: StepRun[]
  /** Running steps whose drivers must stop. */
  readonly cancelled: StepRun[]
  /** Steps that reached a result now (succeeded, failed, or waiting to retry). */
  readonly reported: StepRun[]
  /** Set when the run ended with this change. */
  finished?: RunStatus
}

export const STEP_RESULT = 'conveyor.step.result'
const STEP_TIMEOUT = 'conveyor.step.timeout'
const STEP_RETRY = 'conveyor.step.retry'
const STEP_WATCH = 'conveyor.step.watch'
const MAX_BACKOFF_MS = 5 * 60_000

/** True for the events and timers the pipeline layer handles (never given to the lifecycle machine). */
export const isRunEvent = (type: string): boolean =>
  type === STEP_RESULT || type === STEP_TIMEOUT || type === STEP_RETRY || type === STEP_WATCH

const timeoutTimer = (step: StepRun, now: number): DurableTimer => ({
  id: `conveyor.timeout.${step.id}`,
  dueAt: now + step.timeoutMs!,
  event: { type: STEP_TIMEOUT, step: step.id, attempt: step.attempt },
})
const retryTimer = (step: StepRun, now: number): DurableTimer => ({
  id: `conveyor.retry.${step.id}`,
  dueAt: now + Math.min(MAX_BACKOFF_MS, step.backoffMs * 2 ** (step.attempt - 1)),
  event: { type: STEP_RETRY, step: step.id, attempt: step.attempt },
})
/** One per run while steps run: a running step no driver holds is dispatched again when it fires. */
const WATCH_TIMER = 'conveyor.watch'
const watchTimer = (dueAt: number): DurableTimer => ({ id: WATCH_TIMER, dueAt, event: { type: STEP_WATCH } })
const redispatchMsOf = (step: StepRun): number => step.redispatchMs ?? DEFAULT_REDISPATCH_MS
const isStepTimer = (timer: DurableTimer, step: string): boolean =>
  timer.id === `conveyor.timeout.${step}` || timer.id === `conveyor.retry.${step}`

/** A run and the durable timers of its actor, changed together. */
export interface RunState {
  readonly run: PipelineRun
  readonly timers: readonly DurableTimer[]
}

class Change {
  run: PipelineRun
  timers: DurableTimer[]
  readonly effects: RunEffects = { dispatched: [], cancelled: [], reported: [] }
  readonly #now: number
  readonly #iso: string

  constructor(state: RunState, now: number) {
    this.run = state.run
    this.timers = [...state.timers]
    this.#now = now
    this.#iso = new Date(now).toISOString()
  }

  update(id: string, patch: Partial<StepRun>): StepRun {
    let updated: StepRun | undefined
    this.run = {
      ...this.run,
      steps: this.run.steps.map((step) => (step.id === id ? (updated = { ...step, ...patch }) : step)),
    }
    return updated!
  }

  /** Starts every pending step whose needs have all succeeded. */
  dispatchReady(): void {
    const succeeded = new Set(this.run.steps.filter((s) => s.status === 'succeeded').map((s) => s.id))
    for (const step of this.run.steps)
      if (step.status === 'pending' && step.needs.every((need) => succeeded.has(need))) this.dispatch(step)
  }

  dispatch(step: StepRun): void {
    // A new dispatch starts unclaimed: the previous dispatch's claim (and message) go.
    const { claim: _claim, message: _message, redispatchedAt: _redispatchedAt, ...rest } = step
    const next: StepRun = { ...rest, status: 'running', attempt: step.attempt + 1, startedAt: this.#iso }
    this.run = { ...this.run, steps: this.run.steps.map((s) => (s.id === step.id ? next : s)) }
    this.timers = this.timers.filter((t) => !isStepTimer(t, step.id))
    if (next.timeoutMs !== undefined) this.timers.push(timeoutTimer(next, this.#now))
    this.#armWatch(this.#now + redispatchMsOf(next))
    this.effects.dispatched.push(next)
  }

  /** The run's watch fires no later than `dueAt`. */
  #armWatch(dueAt: number): void {
    const current = this.timers.find((t) => t.id === WATCH_TIMER)
    if (current && current.dueAt <= dueAt) return
    this.timers = [...this.timers.filter((t) => t.id !== WATCH_TIMER), watchTimer(dueAt)]
  }

  /**
   * The run's watch fired. A running step held by nobody for its `redispatchMs` (its dispatch was
   * lost or never claimed, or its holder vanished) gets the same dispatch sent again: claims keep
   * it to one execution at a time, and a finished one never runs again. The watch goes on while
   * any step runs.
   */
  watch(): void {
    this.timers = this.timers.filter((t) => t.id !== WATCH_TIMER)
    let next: number | undefined
    for (const step of this.run.steps) {
      if (step.status !== 'running') continue
      const sentAt = Date.parse(step.redispatchedAt ?? step.startedAt ?? this.#iso)
      const held = step.claim !== undefined && step.claim.expiresAt > this.#now
      let dueAt = sentAt + redispatchMsOf(step)
      if (!held && dueAt <= this.#now) {
        this.effects.dispatched.push(this.update(step.id, { redispatchedAt: this.#iso }))
        dueAt = this.#now + redispatchMsOf(step)
      } else if (held) dueAt = Math.max(dueAt, this.#now + redispatchMsOf(step))
      next = Math.min(next ?? dueAt, dueAt)
    }
    if (next !== undefined) this.timers.push(watchTimer(next))
  }

  /** A dispatch failed: retry after a backoff while retries remain, else fail the run. */
  fail(step: StepRun, message: string, retryable: boolean, data: Record<string, unknown> = {}): void {
    this.timers = this.timers.filter((t) => !isStepTimer(t, step.id))
    if (retryable && step.attempt <= step.retries) {
      const waiting = this.update(step.id, { status: 'retrying', message, data })
      this.timers.push(retryTimer(waiting, this.#now))
      this.effects.reported.push(waiting)
      return
    }
    const failed = this.update(step.id, { status: 'failed', message, data, finishedAt: this.#iso })
    this.effects.reported.push(failed)
    this.end('failed', `step ${step.id} failed: ${message}`)
  }

  /** Ends the run: what has not finished is cancelled (running steps are told to stop). */
  end(status: RunStatus, message: string): void {
    for (const step of this.run.steps) {
      if (step.status === 'running') this.effects.cancelled.push(step)
      if (step.status === 'pending' || step.status === 'running' || step.status === 'retrying') {
        this.update(step.id, {
          status: 'cancelled',
          message: step.status === 'pending' ? `not started: ${message}` : message,
          finishedAt: this.#iso,
        })
      }
      this.timers = this.timers.filter((t) => !isStepTimer(t, step.id))
    }
    this.timers = this.timers.filter((t) => t.id !== WATCH_TIMER)
    this.run = { ...this.run, status, finishedAt: this.#iso, message }
    this.effects.finished = status
  }

  finishIfDone(): void {
    if (this.run.status === 'running' && this.run.steps.every((s) => s.status === 'succeeded')) {
      this.run = {
        ...this.run,
        status: 'succeeded',
        finishedAt: this.#iso,
        message: `all ${this.run.steps.length} steps succeeded`,
      }
      this.timers = this.timers.filter((t) => t.id !== WATCH_TIMER)
      this.effects.finished = 'succeeded'
    }
  }

  result(): RunState & { effects: RunEffects } {
    return { run: this.run, timers: this.timers, effects: this.effects }
  }
}

/** A new run of `steps`: every step pending, then those without needs dispatched. */
export function startRun(
  pipeline: string,
  plan: readonly StepPlan[],
  timers: readonly DurableTimer[],
  now: number,
): RunState & { effects: RunEffects } {
  const run: PipelineRun = {
    pipeline,
    status: 'running',
    startedAt: new Date(now).toISOString(),
    steps: plan.map((step) => ({ ...step, status: 'pending', attempt: 0 })),
  }
  const change = new Change({ run, timers }, now)
  change.dispatchReady()
  return change.result()
}

/**
 * Applies a step report or a step timer to a run. Anything that does not match the step's current
 * dispatch (a late result, a redelivery, a timer of an earlier attempt) changes nothing: undefined.
 */
export function advanceRun(
  state: RunState,
  event: { readonly type: string; readonly [key: string]: unknown },
  now: number,
): (RunState & { effects: RunEffects }) | undefined {
  if (state.run.status !== 'running') return undefined
  if (event.type === STEP_WATCH) {
    const change = new Change(state, now)
    change.watch()
    return change.result()
  }
  const step = state.run.steps.find((s) => s.id === event.step)
  if (!step || step.attempt !== event.attempt) return undefined
  const change = new Change(state, now)
  if (event.type === STEP_RESULT) {
    if (step.status !== 'running') return undefined
    const report = event as unknown as StepReport
    if (report.success) {
      change.timers = change.timers.filter((t) => !isStepTimer(t, step.id))
      change.effects.reported.push(
        change.update(step.id, {
          status: 'succeeded',
          message: report.message,
          data: report.data,
          finishedAt: new Date(now).toISOString(),
        }),
      )
      change.dispatchReady()
      change.finishIfDone()
    } else change.fail(step, report.message, report.retryable, report.data)
  } else if (event.type === STEP_TIMEOUT) {
    if (step.status !== 'running') return undefined
    change.effects.cancelled.push(step)
    change.fail(step, `timed out after ${step.timeoutMs} ms (attempt ${step.attempt})`, true)
  } else if (event.type === STEP_RETRY) {
    if (step.status !== 'retrying') return undefined
    change.dispatch(step)
  } else return undefined
  return change.result()
}

/** Cancels a running run (the resource was cancelled, replaced or deleted). */
export function cancelRun(state: RunState, reason: string, now: number): RunState & { effects: RunEffects } {
  const change = new Change(state, now)
  if (state.run.status === 'running') change.end('cancelled', reason)
  return change.result()
}
