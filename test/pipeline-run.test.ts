import { describe, expect, it } from 'vitest'
import { advanceRun, cancelRun, startRun } from '../actors/pipeline/run.ts'
import { planOf } from '../definitions/pipeline.ts'

const NOW = 1_000_000
const plan = planOf([
  { id: 'a', driver: 'd' },
  { id: 'b', driver: 'd', needs: ['a'], retries: 1, backoff: '100ms', timeout: '5s' },
  { id: 'c', driver: 'd', needs: ['a'] },
])
const report = (step: string, attempt: number, success: boolean, retryable = true) => ({
  type: 'conveyor.step.result',
  step,
  attempt,
  runid: 'r',
  success,
  retryable,
  message: success ? 'ok' : 'no',
  data: {},
})

describe('pipeline run logic', () => {
  it('dispatches again a running step that nobody holds once its redispatch time passes, and leaves a held one', () => {
    const started = startRun('p', plan, [], NOW)
    const watch = started.timers.find((t) => t.id === 'conveyor.watch')!
    expect(watch.dueAt).toBe(NOW + 5 * 60_000)
    const lost = advanceRun(started, watch.event, watch.dueAt)!
    expect(lost.effects.dispatched.map((s) => `${s.id}#${s.attempt}`)).toEqual(['a#1'])
    expect(lost.timers.find((t) => t.id === 'conveyor.watch')!.dueAt).toBe(watch.dueAt + 5 * 60_000)
    const held = {
      ...started,
      run: {
        ...started.run,
        steps: started.run.steps.map((s) =>
          s.id === 'a' ? { ...s, claim: { token: 't', holder: 'h', execution: 1, expiresAt: watch.dueAt + 1000 } } : s,
        ),
      },
    }
    expect(advanceRun(held, watch.event, watch.dueAt)!.effects.dispatched).toEqual([])
    const done = advanceRun(started, report('a', 1, true), NOW + 10)!
    const allDone = advanceRun(advanceRun(done, report('b', 1, true), NOW + 20)!, report('c', 1, true), NOW + 30)!
    expect(allDone.run.status).toBe('succeeded')
    expect(allDone.timers).toEqual([])
  })

  it('dispatches what is ready, retries after a backoff timer, times out with a durable timer, and ignores stale reports', () => {
    const started = startRun('p', plan, [], NOW)
    expect(started.effects.dispatched.map((s) => s.id)).toEqual(['a'])
    const afterA = advanceRun(started, report('a', 1, true), NOW + 10)!
    expect(afterA.effects.dispatched.map((s) => `${s.id}#${s.attempt}`)).toEqual(['b#1', 'c#1'])
    // Besides the run's watch, which looks after every running step.
    expect(afterA.timers.filter((t) => t.id !== 'conveyor.watch')).toEqual([
      {
        id: 'conveyor.timeout.b',
        dueAt: NOW + 10 + 5000,
        event: { type: 'conveyor.step.timeout', step: 'b', attempt: 1 },
      },
    ])
    // A second report for the same dispatch, or one for an old attempt, changes nothing.
    expect(advanceRun(afterA, report('a', 1, true), NOW + 11)).toBeUndefined()
    const failedB = advanceRun(afterA, report('b', 1, false), NOW + 20)!
    expect(failedB.run.steps.find((s) => s.id === 'b')).toMatchObject({ status: 'retrying', attempt: 1 })
    expect(failedB.timers.map((t) => t.id)).toEqual(['conveyor.watch', 'conveyor.retry.b'])
    expect(failedB.timers[1]!.dueAt).toBe(NOW + 20 + 100)
    const retried = advanceRun(failedB, { type: 'conveyor.step.retry', step: 'b', attempt: 1 }, NOW + 120)!
    expect(retried.effects.dispatched.map((s) => `${s.id}#${s.attempt}`)).toEqual(['b#2'])
    expect(advanceRun(retried, report('b', 1, true), NOW + 130)).toBeUndefined()
    const timedOut = advanceRun(retried, { type: 'conveyor.step.timeout', step: 'b', attempt: 2 }, NOW + 5200)!
    // The timed-out step and the one still running are both told to stop.
    expect(timedOut.effects.cancelled.map((s) => `${s.id}#${s.attempt}`)).toEqual(['b#2', 'c#1'])
    expect(timedOut.effects.finished).toBe('failed')
    expect(timedOut.run.steps.map((s) => `${s.id}:${s.status}`)).toEqual(['a:succeeded', 'b:failed', 'c:cancelled'])
    expect(timedOut.timers).toEqual([])
  })

  it('a run where every step succeeds succeeds; cancelling ends what runs', () => {
    let state = startRun('p', plan, [], NOW)
    state = advanceRun(state, report('a', 1, true), NOW)!
    const cancelled = cancelRun(state, 'resource reached final state cancelled', NOW)
    expect(cancelled.effects).toMatchObject({ finished: 'cancelled' })
    expect(cancelled.effects.cancelled.map((s) => s.id)).toEqual(['b', 'c'])
    state = advanceRun(state, report('b', 1, true), NOW)!
    state = advanceRun(state, report('c', 1, true), NOW)!
    expect(state.run.status).toBe('succeeded')
  })

  it('a terminal failure fails at once whatever the retries', () => {
    let state = startRun('p', plan, [], NOW)
    state = advanceRun(state, report('a', 1, true), NOW)!
    const failed = advanceRun(state, report('b', 1, false, false), NOW)!
    expect(failed.run.status).toBe('failed')
    expect(failed.run.steps.find((s) => s.id === 'b')).toMatchObject({ status: 'failed', attempt: 1 })
  })

  it('steps without needs anywhere run in order, as in Conveyor CI', () => {
    expect(
      planOf([
        { id: 'x', driver: 'd' },
        { id: 'y', driver: 'd' },
        { id: 'z', driver: 'd' },
      ]).map((s) => s.needs),
    ).toEqual([[], ['x'], ['y']])
  })
})
