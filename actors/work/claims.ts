import type { AnyStateMachine } from 'xstate'
import type { ActorRecord } from '../../runtime/actor-record.ts'
import type { OutboxMessage } from '../../runtime/outbox.ts'
import { subjects } from '../../runtime/keys.ts'
import type { ConveyorEvent, DriverOutcome } from '../../definitions/objects.ts'
import type { StepRun } from '../../definitions/pipeline.ts'
import {
  reconcileWorkId,
  WorkEvent,
  type ClaimAnswer,
  type ClaimRequest,
  type DriverWork,
  type RenewAnswer,
  type RenewRequest,
  type ReportAnswer,
  type ReportRequest,
  type WorkAnswer,
  type WorkClaim,
  type WorkRequest,
} from '../../definitions/work.ts'
import { applyEvent } from '../lifecycle/apply-event.ts'
import { DEFAULT_LIFECYCLE_ID } from '../lifecycle/machine.ts'
import { dispatchOf } from '../pipeline/effects.ts'
import { applyRunEvent, transitionedEvent } from '../pipeline/host.ts'
import { STEP_RESULT } from '../pipeline/run.ts'

/**
 * Lifecycle events the actor applies itself as drivers work on a resource without a pipeline
 * (each only when the current state accepts it):
 * - `START` when a driver claims the resource's current version (built-in lifecycle only);
 * - `conveyor.driver.result` `{driver, success, message, data}` after each driver's outcome;
 * - `SUCCEED` or `FAIL` `{message}` once every driver serving the type has reported.
 */
export const DRIVER_RESULT_EVENT = 'conveyor.driver.result'

/** What the work protocol needs to know besides the record. */
export interface WorkContext {
  readonly machine: AnyStateMachine
  readonly now: number
  /** Drivers with a live instance serving this resource type (from the registry). */
  readonly servingDrivers: (type: string) => readonly string[]
}

/** A work request applied to a record: the new record (when it changed), the messages its commit carries, and the answer. */
export interface WorkOutcome {
  readonly record: ActorRecord
  readonly changed: boolean
  readonly messages: readonly OutboxMessage[]
  readonly answer: WorkAnswer
  /** The answer wants the resource as stored (a granted step claim): the host adds it. */
  readonly wantsResource: boolean
}

export const isWorkRequest = (event: { readonly type: string }): event is WorkRequest =>
  event.type === WorkEvent.claim || event.type === WorkEvent.renew || event.type === WorkEvent.report

const unchanged = (record: ActorRecord, answer: WorkAnswer): WorkOutcome => ({
  record,
  changed: false,
  messages: [],
  answer,
  wantsResource: false,
})
const stale = (record: ActorRecord, reason: string): WorkOutcome => unchanged(record, { result: 'stale', reason })

/** The driver whose work a request is about (a reconcile names it; a step's is in the stored plan), when the record knows. */
export function driverOfWork(record: ActorRecord | undefined, request: WorkRequest): string | undefined {
  const work = request.work
  if (work.kind !== 'step') return work.driver
  return record?.run?.steps.find((step) => step.id === work.step)?.driver
}

/** Applies a claim, renewal or report; pure: the host commits `record` and `messages`, then answers. */
export function applyWork(
  record: ActorRecord | undefined,
  request: WorkRequest,
  context: WorkContext,
): WorkOutcome | { readonly missing: true; readonly answer: WorkAnswer } {
  if (!record || record.uid !== request.work.uid)
    return { missing: true, answer: { result: 'stale', reason: 'the resource was deleted or replaced' } }
  return request.work.kind === 'step'
    ? applyStepWork(record, request, context)
    : applyReconcileWork(record, request, context)
}

function grant(holder: string, token: string, execution: number, leaseMs: number, now: number): WorkClaim {
  return { token, holder, execution, expiresAt: now + leaseMs }
}

function applyStepWork(record: ActorRecord, request: WorkRequest, context: WorkContext): WorkOutcome {
  const work = request.work as Extract<WorkRequest['work'], { kind: 'step' }>
  const run = record.run
  if (record.deletedAt || !run || record.runid !== work.runid)
    return stale(record, 'the run was replaced, or the resource deleted')
  const step = run.steps.find((s) => s.id === work.step)
  if (!step) return stale(record, `the run has no step ${work.step}`)
  if (request.type === WorkEvent.claim && (request as ClaimRequest).replay) {
    // A forced replay runs the step again as planned, outside the run: nothing is recorded.
    const steps = Object.fromEntries(run.steps.filter((s) => s.status === 'succeeded').map((s) => [s.id, s.data ?? {}]))
    return {
      record,
      changed: false,
      messages: [],
      answer: {
        result: 'go',
        execution: (step.executions ?? 0) + 1,
        expiresAt: context.now,
        step: dispatchOf(step, true),
        steps,
      },
      wantsResource: true,
    }
  }
  if (step.attempt !== work.dispatch)
    return stale(record, `dispatch ${work.dispatch} of step ${step.id} was superseded by dispatch ${step.attempt}`)
  const replace = (next: StepRun): ActorRecord => ({
    ...record,
    run: { ...run, steps: run.steps.map((s) => (s.id === step.id ? next : s)) },
  })
  const finished = step.status === 'succeeded' || step.status === 'failed' || step.status === 'retrying'
  if (request.type === WorkEvent.claim) {
    if (finished)
      return unchanged(record, {
        result: 'done',
        outcome: { success: step.status === 'succeeded', message: step.message ?? '', data: step.data ?? {} },
      })
    if (step.status !== 'running') return stale(record, `step ${step.id} is ${step.status}`)
    const held = step.claim
    if (held && held.token !== request.token && held.expiresAt > context.now)
      return unchanged(record, { result: 'busy', holder: held.holder, expiresAt: held.expiresAt })
    const execution = held?.token === request.token ? held.execution : (step.executions ?? 0) + 1
    const claim = grant(request.holder, request.token, execution, request.leaseMs, context.now)
    const { message: _waiting, ...rest } = step
    const next: StepRun = { ...rest, claim, executions: Math.max(execution, step.executions ?? 0) }
    const steps = Object.fromEntries(run.steps.filter((s) => s.status === 'succeeded').map((s) => [s.id, s.data ?? {}]))
    const answer: ClaimAnswer = {
      result: 'go',
      execution,
      expiresAt: claim.expiresAt,
      step: dispatchOf(next, true),
      steps,
    }
    return { record: replace(next), changed: true, messages: [], answer, wantsResource: true }
  }
  if (request.type === WorkEvent.renew) {
    if (step.status !== 'running' || step.claim?.token !== request.token)
      return unchanged(record, abortReason(step, request.token))
    const claim = { ...step.claim, expiresAt: context.now + request.leaseMs }
    return {
      record: replace({ ...step, claim }),
      changed: true,
      messages: [],
      answer: { result: 'ok', expiresAt: claim.expiresAt } satisfies RenewAnswer,
      wantsResource: false,
    }
  }
  if (finished)
    return unchanged(
      record,
      step.claim?.token === request.token
        ? { result: 'duplicate' }
        : { result: 'stale', reason: `step ${step.id} was finished by another execution` },
    )
  if (step.status !== 'running') return stale(record, `step ${step.id} is ${step.status}`)
  if (step.claim?.token !== request.token)
    return stale(record, `the claim on step ${step.id} was taken over by ${step.claim?.holder ?? 'nobody'}`)
  const report = request as ReportRequest
  const applied = applyRunEvent(
    context.machine,
    record,
    {
      type: STEP_RESULT,
      step: step.id,
      attempt: step.attempt,
      runid: record.runid,
      success: report.success,
      retryable: report.retryable,
      message: report.message,
      data: report.data,
    },
    context.now,
  )
  if (!applied) return stale(record, `step ${step.id} no longer takes reports`)
  return {
    record: applied.record,
    changed: true,
    messages: applied.messages,
    answer: { result: 'recorded' } satisfies ReportAnswer,
    wantsResource: false,
  }
}

function abortReason(step: StepRun, token: string): RenewAnswer {
  if (step.status !== 'running') return { result: 'abort', reason: `step ${step.id} is ${step.status}` }
  return {
    result: 'abort',
    reason:
      step.claim && step.claim.token !== token
        ? `the claim was taken over by ${step.claim.holder}`
        : 'the claim expired',
  }
}

function applyReconcileWork(record: ActorRecord, request: WorkRequest, context: WorkContext): WorkOutcome {
  const work = request.work as Extract<WorkRequest['work'], { kind: 'reconcile' }>
  if (work.deleted ? !record.deletedAt : record.deletedAt)
    return stale(record, work.deleted ? 'the resource was not deleted' : 'the resource was deleted')
  if (record.runid !== work.runid) return stale(record, 'superseded by a newer version of the resource')
  const id = reconcileWorkId(work.runid, work.deleted)
  const entry = record.drivers?.[work.driver]
  const current = entry?.work === id ? entry : undefined
  const withEntry = (next: DriverWork): ActorRecord => ({
    ...record,
    drivers: { ...record.drivers, [work.driver]: next },
  })
  if (request.type === WorkEvent.claim) {
    if (current?.outcomeFor === id && current.outcome)
      return unchanged(record, { result: 'done', outcome: current.outcome })
    const held = current?.claim
    if (held && held.token !== request.token && held.expiresAt > context.now)
      return unchanged(record, { result: 'busy', holder: held.holder, expiresAt: held.expiresAt })
    const execution = held?.token === request.token ? held.execution : (current?.executions ?? 0) + 1
    const claim = grant(request.holder, request.token, execution, request.leaseMs, context.now)
    const { outcome, outcomeFor } = entry ?? {}
    let next = withEntry({
      work: id,
      executions: Math.max(execution, current?.executions ?? 0),
      claim,
      ...(outcome ? { outcome } : {}),
      ...(outcomeFor ? { outcomeFor } : {}),
    })
    const messages: OutboxMessage[] = []
    // The built-in lifecycle shows that work began on this version.
    if (!work.deleted && next.lifecycle === DEFAULT_LIFECYCLE_ID)
      next = follow(context, next, { type: 'START' }, messages)
    return {
      record: next,
      changed: true,
      messages,
      answer: { result: 'go', execution, expiresAt: claim.expiresAt },
      wantsResource: false,
    }
  }
  if (request.type === WorkEvent.renew) {
    if (!current?.claim || current.claim.token !== request.token || current.outcomeFor === id) {
      return unchanged(record, {
        result: 'abort',
        reason:
          current?.outcomeFor === id
            ? 'the work is done'
            : current?.claim
              ? `the claim was taken over by ${current.claim.holder}`
              : 'the claim expired',
      })
    }
    const claim = { ...current.claim, expiresAt: context.now + (request as RenewRequest).leaseMs }
    return {
      record: withEntry({ ...current, claim }),
      changed: true,
      messages: [],
      answer: { result: 'ok', expiresAt: claim.expiresAt },
      wantsResource: false,
    }
  }
  if (current?.outcomeFor === id)
    return unchanged(
      record,
      current.claim?.token === request.token
        ? { result: 'duplicate' }
        : { result: 'stale', reason: 'another execution reported first' },
    )
  if (!current?.claim || current.claim.token !== request.token)
    return stale(record, `the claim was taken over by ${current?.claim?.holder ?? 'nobody'}`)
  const report = request as ReportRequest
  const outcome: DriverOutcome = {
    success: report.success,
    message: report.message,
    data: { ...report.data },
    runid: work.runid,
    forRevision: work.revision,
    attempt: current.claim.execution,
    finishedAt: new Date(context.now).toISOString(),
  }
  let next = withEntry({ ...current, outcome, outcomeFor: id })
  const result: ConveyorEvent = {
    kind: 'driver.result',
    uid: record.uid,
    revision: 0,
    time: outcome.finishedAt,
    type: record.type,
    name: record.name,
    runid: record.runid,
    driver: work.driver,
    outcome,
  }
  const messages: OutboxMessage[] = [
    { subject: subjects.outcome(record.type, record.name, result.kind), event: result },
  ]
  if (!work.deleted) {
    next = follow(
      context,
      next,
      {
        type: DRIVER_RESULT_EVENT,
        driver: work.driver,
        success: outcome.success,
        message: outcome.message,
        data: outcome.data,
      },
      messages,
    )
    const settled = settledOutcome(next, id, context.servingDrivers(record.type))
    if (settled) next = follow(context, next, settled, messages)
  }
  return { record: next, changed: true, messages, answer: { result: 'recorded' }, wantsResource: false }
}

/** `SUCCEED` / `FAIL` once every driver serving the type (and every one that worked on this version) has an outcome for it. */
function settledOutcome(
  record: ActorRecord,
  id: string,
  serving: readonly string[],
): { type: 'SUCCEED' | 'FAIL'; message: string } | undefined {
  const drivers = record.drivers ?? {}
  const involved = new Set([...serving, ...Object.keys(drivers).filter((d) => drivers[d]!.work === id)])
  const outcomes: [string, DriverOutcome][] = []
  for (const driver of involved) {
    const entry = drivers[driver]
    if (entry?.outcomeFor !== id || !entry.outcome) return undefined
    outcomes.push([driver, entry.outcome])
  }
  const failed = outcomes.filter(([, o]) => !o.success)
  if (failed.length === 0) return { type: 'SUCCEED', message: `${outcomes.length} driver(s) succeeded` }
  return {
    type: 'FAIL',
    message: failed.map(([d, o]) => `driver ${d} failed${o.message ? `: ${o.message}` : ''}`).join('; '),
  }
}

/** Applies a system event to the lifecycle when the current state accepts it (and records the transition). */
function follow(
  context: WorkContext,
  record: ActorRecord,
  event: { readonly type: string; readonly [key: string]: unknown },
  messages: OutboxMessage[],
): ActorRecord {
  // Most lifecycles never mention most of these events: no transition to try.
  if (!mentions(context.machine, event.type)) return record
  const result = applyEvent(context.machine, record, { ...event, id: '' }, context.now)
  if (result.kind !== 'applied') return record
  messages.push({
    subject: subjects.outcome(record.type, record.name, 'transitioned'),
    event: transitionedEvent(result.record, result.from, result.to, event),
  })
  return result.record
}

/** True when a machine has a transition on the event type, itself or through a `prefix.*` wildcard. */
function mentions(machine: AnyStateMachine, type: string): boolean {
  const events = (machine as unknown as { events: readonly string[] }).events
  return events.some((e) => e === type || (e.endsWith('.*') && type.startsWith(e.slice(0, -1))))
}
