import { describe, expect, it } from 'vitest'
import { actorInitializer } from '../actors/lifecycle/initializer.ts'
import { machineFor, DEFAULT_LIFECYCLE_ID } from '../actors/lifecycle/machine.ts'
import { DEFAULT_LIFECYCLE } from '../definitions/lifecycle.ts'
import { applyBatch, type BatchItem } from '../actors/worker/apply-batch.ts'
import { planOf } from '../definitions/pipeline.ts'
import type { ActorRecord } from '../runtime/actor-record.ts'
import type { WorkRef } from '../definitions/work.ts'

const machine = machineFor(DEFAULT_LIFECYCLE_ID, DEFAULT_LIFECYCLE)
const NOW = Date.parse('2026-12-01T00:00:00Z')
/** What etcd would give back: every record goes through JSON, as it does between commits. */
const roundTrip = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T

function fresh(pipeline?: boolean): ActorRecord {
  const { record } = actorInitializer.initial({
    uid: 'u1',
    type: 'build',
    name: 'app',
    runid: 'r1',
    lifecycle: undefined,
    ...(pipeline
      ? { pipeline: { name: 'ci', plan: planOf([{ id: 'compile', driver: 'sh', commands: ['make'] }]) } }
      : {}),
    now: NOW,
  })
  return roundTrip(record)
}

let seq = 0
const inbox = (event: Record<string, unknown>): BatchItem => ({
  kind: 'inbox',
  seq: ++seq,
  event: { id: `e${seq}`, ...event } as never,
})

function apply(
  record: ActorRecord | undefined,
  items: BatchItem[],
  options: { now?: number; serving?: string[] } = {},
) {
  const output = applyBatch({
    type: 'build',
    name: 'app',
    machine,
    record,
    items,
    now: options.now ?? NOW,
    servingDrivers: () => options.serving ?? [],
  })
  return {
    ...output,
    record: output.record ? roundTrip(output.record) : undefined,
    answers: output.replies.map((r) => r.reply(100, undefined).body),
  }
}

const reconcile: WorkRef = { kind: 'reconcile', uid: 'u1', runid: 'r1', driver: 'd', revision: 7 }
const claim = (token: string, work: WorkRef = reconcile) =>
  inbox({ type: 'conveyor.claim', work, token, holder: token, leaseMs: 1000 })
const renew = (token: string, work: WorkRef = reconcile) =>
  inbox({ type: 'conveyor.renew', work, token, leaseMs: 1000 })
const report = (token: string, success = true, work: WorkRef = reconcile) =>
  inbox({
    type: 'conveyor.report',
    work,
    token,
    success,
    retryable: false,
    message: success ? 'ok' : 'no',
    data: { n: 1 },
  })

describe('applyBatch: the work protocol, purely', () => {
  it('grants a claim once, answers busy to another token while it lives, and lets an expired one be taken over (next execution)', () => {
    const granted = apply(fresh(), [claim('a'), claim('a'), claim('b')])
    expect(granted.answers.map((a) => a.result)).toEqual(['go', 'go', 'busy'])
    expect(granted.answers[0]).toMatchObject({ execution: 1 })
    expect(granted.answers[1]).toMatchObject({ execution: 1 })
    expect(granted.record!.state).toBe('running')
    const later = apply(granted.record, [claim('b'), renew('a')], { now: NOW + 5000 })
    expect(later.answers).toEqual([
      expect.objectContaining({ result: 'go', execution: 2 }),
      expect.objectContaining({ result: 'abort' }),
    ])
  })

  it('records a report once: a repeat is a duplicate, the old holder is stale, and a later claim is done', () => {
    const claimed = apply(fresh(), [claim('a')]).record
    const reported = apply(claimed, [report('b'), report('a'), report('a'), claim('c')], { serving: ['d'] })
    expect(reported.answers.map((a) => a.result)).toEqual(['stale', 'recorded', 'duplicate', 'done'])
    expect(reported.record!.drivers!.d!.outcome).toMatchObject({
      success: true,
      message: 'ok',
      data: { n: 1 },
      forRevision: 7,
      attempt: 1,
      runid: 'r1',
    })
    expect(reported.record!.state).toBe('succeeded')
    expect(reported.messages.map((m) => ('event' in m ? `${m.event.kind}:${m.event.to ?? ''}` : ''))).toEqual([
      'driver.result:',
      'transitioned:succeeded',
    ])
  })

  it('waits for every driver serving the type before SUCCEED or FAIL', () => {
    let record = apply(fresh(), [claim('a')]).record
    record = apply(record, [report('a')], { serving: ['d', 'other'] }).record
    expect(record!.state).toBe('running')
    const other: WorkRef = { ...reconcile, driver: 'other' }
    record = apply(record, [claim('o', other), report('o', false, other)], { serving: ['d', 'other'] }).record
    expect(record!.state).toBe('failed')
  })

  it('answers stale for another version, and for a deletion of a resource that was not deleted', () => {
    const answers = apply(fresh(), [
      claim('a', { ...reconcile, runid: 'r0' }),
      claim('a', { ...reconcile, deleted: true }),
      claim('a', { ...reconcile, uid: 'other' }),
    ]).answers
    expect(answers.map((a) => a.result)).toEqual(['stale', 'stale', 'stale'])
  })

  it('hands a step claim the plan, and takes its report into the run', () => {
    const record = fresh(true)
    expect(record.run!.steps[0]).toMatchObject({ status: 'running', attempt: 1 })
    const step: WorkRef = { kind: 'step', uid: 'u1', runid: 'r1', step: 'compile', dispatch: 1 }
    const claimed = apply(record, [claim('a', step)])
    expect(claimed.wantsResource).toBe(true)
    expect(claimed.answers[0]).toMatchObject({
      result: 'go',
      execution: 1,
      step: { id: 'compile', commands: ['make'] },
      steps: {},
    })
    const done = apply(claimed.record, [
      report('a', true, step),
      claim('b', step),
      claim('b', { ...step, dispatch: 2 }),
    ])
    expect(done.answers.map((a) => a.result)).toEqual(['recorded', 'done', 'stale'])
    expect(done.record!.run).toMatchObject({ status: 'succeeded' })
  })

  it('a tombstone answers 404 to events, takes a deletion claim, and its expiry timer removes it', () => {
    const tombstone = roundTrip(actorInitializer.tombstone(fresh(), NOW))
    const deleted: WorkRef = { ...reconcile, deleted: true }
    const handled = apply(tombstone, [inbox({ type: 'START' }), claim('a', deleted), report('a', true, deleted)])
    expect(handled.answers[0]).toMatchObject({ status: 404 })
    expect(handled.answers.slice(1).map((a) => a.result)).toEqual(['go', 'recorded'])
    const timer = tombstone.timers[0]!
    expect(apply(handled.record, [{ kind: 'timer', id: timer.id, dueAt: timer.dueAt }]).record).toBeUndefined()
  })

  it('reports a timer key without a matching timer as an orphan to delete', () => {
    const output = apply(fresh(), [{ kind: 'timer', id: 'gone', dueAt: NOW }])
    expect(output.orphanTimers).toEqual([{ id: 'gone', dueAt: NOW }])
    expect(output.changed).toBe(false)
  })
})

describe('inbox positions and incarnations', () => {
  it('commits the position of a refused event, so a redelivery after a failover is never applied', () => {
    const refused = inbox({ type: 'NOT-AN-EVENT-OF-THIS-LIFECYCLE' })
    const first = apply(fresh(), [refused])
    expect(first.answers[0]!.status).toBe(409)
    expect(first.changed).toBe(true)
    expect(first.record!.inboxSeq).toBe(refused.kind === 'inbox' ? refused.seq : -1)
    // The next owner gets the message again from the stream: it is passed over, not applied.
    const again = apply(first.record, [refused])
    expect(again.answers[0]).toMatchObject({ duplicate: true })
    expect(again.record!.seq).toBe(first.record!.seq)
  })

  it('refuses an event sent to an earlier incarnation of the resource (deleted and created again)', () => {
    const stale: BatchItem = { ...(inbox({ type: 'START' }) as BatchItem & { kind: 'inbox' }), incarnation: 'u0' }
    const output = apply(fresh(), [stale])
    expect(output.answers[0]).toMatchObject({ status: 404 })
    expect(output.answers[0]!.detail).toMatch(/deleted and created again/)
    expect(output.record!.state).toBe(fresh().state)
    const current: BatchItem = { ...(inbox({ type: 'START' }) as BatchItem & { kind: 'inbox' }), incarnation: 'u1' }
    expect(apply(fresh(), [current]).answers[0]!.status).not.toBe(404)
  })
})
