import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defineDriver, runDriver, RetryableError, TerminalError, type DriverContext, type DriverHandle } from 'conveyor'
import { createLogger } from '../runtime/logger.ts'
import { api, eventually, startStack, type Stack } from './harness.ts'

let stack: Stack
const quiet = createLogger('test', 'error')

beforeAll(async () => {
  stack = await startStack({ worker: true })
  expect(
    (await api(stack.url, 'POST', '/resource-definitions/', { name: 'app', version: '1', schema: { type: 'object' } }))
      .status,
  ).toBe(201)
})
afterAll(async () => {
  await stack?.close()
})

async function serve(
  name: string,
  reconcile: (ctx: DriverContext) => unknown,
  options: { concurrency?: number; maxDeliver?: number; ackWaitMs?: number; shutdownGraceMs?: number } = {},
): Promise<DriverHandle> {
  const handle = await runDriver(
    defineDriver({
      name,
      resources: [],
      ...(options.concurrency ? { concurrency: options.concurrency } : {}),
      reconcile: reconcile as never,
    }),
    {
      connections: stack.connections,
      logger: quiet,
      ...(options.maxDeliver ? { maxDeliver: options.maxDeliver } : {}),
      ...(options.ackWaitMs ? { ackWaitMs: options.ackWaitMs } : {}),
      ...(options.shutdownGraceMs !== undefined ? { shutdownGraceMs: options.shutdownGraceMs } : {}),
    },
  )
  stack.drivers.push(handle)
  return handle
}

async function runOf(name: string, until: (resource: any) => boolean, what: string, timeoutMs = 15_000): Promise<any> {
  return await eventually(
    async () => {
      const got = await api(stack.url, 'GET', `/resources/app/${name}`)
      return got.status === 200 && until(got.body) ? got.body : undefined
    },
    what,
    timeoutMs,
  )
}

const finished = (resource: any): boolean =>
  ['succeeded', 'failed', 'cancelled'].includes(resource.status.pipeline?.status)
const stepsOf = (resource: any): Record<string, any> =>
  Object.fromEntries(resource.status.steps.map((s: any) => [s.id, s]))
const until = (signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve())))

describe('pipelines API', () => {
  it('stores a pipeline and names the step of every problem', async () => {
    const created = await api(stack.url, 'POST', '/pipelines/', {
      name: 'ok-pipe',
      resource: 'app',
      steps: [
        { id: 'a', name: 'A', driver: 'd1' },
        { id: 'b', name: 'B', driver: 'd2', needs: ['a'], retries: 1, timeout: '30s' },
      ],
    })
    expect(created.status).toBe(201)
    expect(created.body.metadata).toMatchObject({ version: 1 })
    expect((await api(stack.url, 'GET', '/pipelines/ok-pipe')).body.steps).toHaveLength(2)
    expect((await api(stack.url, 'GET', '/pipelines')).body.items.map((p: any) => p.name)).toContain('ok-pipe')
    expect(
      (
        await api(stack.url, 'POST', '/pipelines', {
          name: 'ok-pipe',
          resource: 'app',
          steps: [{ id: 'a', driver: 'd1' }],
        })
      ).status,
    ).toBe(409)

    const bad = async (steps: unknown[], resource = 'app') => {
      const reply = await api(stack.url, 'POST', '/pipelines', { name: 'bad-pipe', resource, steps })
      expect(reply.status).toBe(400)
      expect(reply.headers.get('content-type')).toContain('application/problem+json')
      return reply.body.errors.map((e: any) => `${e.path} ${e.message}`).join('\n')
    }
    expect(
      await bad([
        { id: 'a', driver: 'd' },
        { id: 'b', driver: 'd', needs: ['c'] },
      ]),
    ).toMatch(/^\/steps\/1\/needs\/0 unknown step c/)
    expect(
      await bad([
        { id: 'a', driver: 'd' },
        { id: 'a', driver: 'd' },
      ]),
    ).toMatch(/^\/steps\/1\/id duplicate step id a/)
    expect(
      await bad([
        { id: 'a', driver: 'd', needs: ['b'] },
        { id: 'b', driver: 'd', needs: ['c'] },
        { id: 'c', driver: 'd', needs: ['a'] },
      ]),
    ).toMatch(/^\/steps\/0\/needs steps form a cycle: a → b → c → a/)
    expect(await bad([{ id: 'a', driver: 'Not Valid' }])).toMatch(/^\/steps\/0\/driver/)
    expect(await bad([{ id: 'a', driver: 'd', timeout: 'soon' }])).toMatch(/^\/steps\/0\/timeout/)
    expect(await bad([{ id: 'a', driver: 'd' }], 'no-such-type')).toMatch(
      /^\/resource resource definition no-such-type not found/,
    )

    const forged = await api(stack.url, 'POST', '/resources/app/anything/events', {
      type: 'conveyor.step.result',
      step: 'a',
      attempt: 1,
      success: true,
    })
    expect(forged.status).toBe(400)
    expect(forged.body.errors[0].path).toBe('/type')

    const resource = await api(stack.url, 'POST', '/resources', {
      name: 'orphan',
      resource: 'app',
      pipeline: 'no-such-pipe',
      spec: {},
    })
    expect(resource.status).toBe(400)
    expect(resource.body.errors[0].path).toBe('/pipeline')

    const updated = await api(stack.url, 'PUT', '/pipelines/ok-pipe', {
      name: 'ok-pipe',
      resource: 'app',
      steps: [{ id: 'only', driver: 'd1' }],
    })
    expect(updated.status).toBe(200)
    expect(updated.body.metadata.version).toBe(2)
    expect((await api(stack.url, 'DELETE', '/pipelines/ok-pipe')).status).toBe(200)
    expect((await api(stack.url, 'GET', '/pipelines/ok-pipe')).status).toBe(404)
  })
})

describe('pipeline runs', () => {
  it('runs a DAG: independent steps in parallel, each after what it needs, then the run succeeds', async () => {
    const events: string[] = []
    let inFlight = 0
    let overlap = 0
    const work = (label: string) => async (ctx: DriverContext) => {
      events.push(`start ${ctx.step!.id}`)
      inFlight++
      overlap = Math.max(overlap, inFlight)
      ctx.log(`${label} working on`, ctx.resource.spec.repo)
      await new Promise((resolve) => setTimeout(resolve, 150))
      inFlight--
      events.push(`end ${ctx.step!.id}`)
      return { success: true, message: `${label} done`, data: { step: ctx.step!.id } }
    }
    await serve('dag-fetch', work('fetch'))
    await serve('dag-check', work('check'), { concurrency: 2 })
    await serve('dag-ship', work('ship'))
    await api(stack.url, 'POST', '/pipelines', {
      name: 'dag',
      resource: 'app',
      steps: [
        { id: 'fetch', name: 'Fetch', driver: 'dag-fetch' },
        { id: 'lint', name: 'Lint', driver: 'dag-check', needs: ['fetch'] },
        { id: 'test', name: 'Test', driver: 'dag-check', needs: ['fetch'] },
        { id: 'ship', name: 'Ship', driver: 'dag-ship', needs: ['lint', 'test'] },
      ],
    })
    const created = await api(stack.url, 'POST', '/resources', {
      name: 'dag-run',
      resource: 'app',
      pipeline: 'dag',
      spec: { repo: 'r1' },
    })
    expect(created.status).toBe(201)
    expect(created.body.status.pipeline).toMatchObject({ name: 'dag', status: 'running' })
    const done = await runOf('dag-run', finished, 'the run to finish')
    expect(done.status.pipeline.status).toBe('succeeded')
    expect(done.status.state).toBe('succeeded')
    expect(done.status.steps.map((s: any) => [s.id, s.status, s.attempt])).toEqual([
      ['fetch', 'succeeded', 1],
      ['lint', 'succeeded', 1],
      ['test', 'succeeded', 1],
      ['ship', 'succeeded', 1],
    ])
    expect(stepsOf(done).ship.data).toEqual({ step: 'ship' })
    const order = (label: string) => events.indexOf(label)
    expect(order('end fetch')).toBeLessThan(Math.min(order('start lint'), order('start test')))
    expect(Math.max(order('end lint'), order('end test'))).toBeLessThan(order('start ship'))
    expect(overlap).toBe(2)

    // The whole run's log, every step in order, and the stream ends with the run.
    const response = await fetch(`${stack.url}/logs/pipeline/${done.runid}`)
    const text = await response.text()
    const lines = text
      .split('\n')
      .filter((l) => l.startsWith('data: '))
      .map((l) => JSON.parse(l.slice(6)))
    expect(lines.at(-1)).toMatchObject({ event: 'end', success: true })
    expect(lines.slice(0, -1).map((l: any) => l.step)).toEqual(
      expect.arrayContaining(['fetch', 'lint', 'test', 'ship']),
    )
    expect(lines[0]).toMatchObject({ step: 'fetch', pipeline: 'dag', message: 'fetch working on r1' })
  })

  it('fails the run when a step fails for good, cancelling what has not started; retries what is retryable', async () => {
    const attempts: number[] = []
    await serve('flaky', (ctx) => {
      attempts.push(ctx.attempt)
      if (ctx.attempt < 3) throw new RetryableError(`flake ${ctx.attempt}`)
      return { success: true, message: `ok on attempt ${ctx.attempt}` }
    })
    await serve('broken', () => {
      throw new TerminalError('cannot ever work')
    })
    let laterRan = false
    await serve('later', () => {
      laterRan = true
      return { success: true }
    })
    await api(stack.url, 'POST', '/pipelines', {
      name: 'fragile',
      resource: 'app',
      steps: [
        { id: 'flaky', driver: 'flaky', retries: 2, backoff: '20ms' },
        { id: 'broken', driver: 'broken', needs: ['flaky'], retries: 5 },
        { id: 'later', driver: 'later', needs: ['broken'] },
      ],
    })
    await api(stack.url, 'POST', '/resources', { name: 'fragile-run', resource: 'app', pipeline: 'fragile', spec: {} })
    const done = await runOf('fragile-run', finished, 'the run to fail')
    expect(done.status.pipeline.status).toBe('failed')
    expect(done.status.state).toBe('failed')
    const steps = stepsOf(done)
    expect(steps.flaky).toMatchObject({ status: 'succeeded', attempt: 3, message: 'ok on attempt 3' })
    expect(attempts).toEqual([1, 2, 3])
    expect(steps.broken).toMatchObject({ status: 'failed', attempt: 1, message: 'cannot ever work' })
    expect(steps.later.status).toBe('cancelled')
    expect(laterRan).toBe(false)
    expect(done.status.pipeline.message).toMatch(/step broken failed/)
  })

  it('times a step out with a durable timer even when its driver hangs, and aborts the driver through ctx.signal', async () => {
    let sawAbort = false
    let release: () => void = () => {}
    const released = new Promise<void>((resolve) => (release = resolve))
    await serve('sleeper', async (ctx) => {
      ctx.signal.addEventListener('abort', () => (sawAbort = true))
      await released // ignores the signal: only the actor's timer can end the step
      return { success: true }
    })
    await api(stack.url, 'POST', '/pipelines', {
      name: 'slow',
      resource: 'app',
      steps: [{ id: 'nap', driver: 'sleeper', timeout: '300ms', retries: 0 }],
    })
    await api(stack.url, 'POST', '/resources', { name: 'slow-run', resource: 'app', pipeline: 'slow', spec: {} })
    const done = await runOf('slow-run', finished, 'the step to time out')
    release()
    expect(done.status.pipeline.status).toBe('failed')
    expect(stepsOf(done).nap.message).toBe('timed out after 300 ms (attempt 1)')
    expect(sawAbort).toBe(true)
  })

  it('CANCEL on the resource aborts the running step and cancels the run', async () => {
    let started = false
    let sawAbort = false
    await serve('long-job', async (ctx) => {
      started = true
      await until(ctx.signal)
      sawAbort = true
      return { success: false, message: 'aborted' }
    })
    await api(stack.url, 'POST', '/pipelines', {
      name: 'cancellable',
      resource: 'app',
      steps: [
        { id: 'long', driver: 'long-job' },
        { id: 'after', driver: 'long-job', needs: ['long'] },
      ],
    })
    await api(stack.url, 'POST', '/resources', {
      name: 'cancel-run',
      resource: 'app',
      pipeline: 'cancellable',
      spec: {},
    })
    await eventually(() => (started ? true : undefined), 'the step to start')
    const cancelled = await api(stack.url, 'POST', '/resources/app/cancel-run/events', { type: 'CANCEL' })
    expect(cancelled.status).toBe(200)
    expect(cancelled.body.state).toBe('cancelled')
    await eventually(() => (sawAbort ? true : undefined), 'ctx.signal to fire in the driver')
    const done = await runOf('cancel-run', finished, 'the run to be cancelled')
    expect(done.status.pipeline.status).toBe('cancelled')
    expect(stepsOf(done).long.status).toBe('cancelled')
    expect(stepsOf(done).after).toMatchObject({ status: 'cancelled', attempt: 0 })
  })

  it('a redelivered dispatch of a completed step re-sends its result and does not run it again', async () => {
    let runs = 0
    await serve('once', () => {
      runs++
      return { success: true, message: 'did it' }
    })
    await api(stack.url, 'POST', '/pipelines', {
      name: 'once-pipe',
      resource: 'app',
      steps: [{ id: 'only', driver: 'once' }],
    })
    await api(stack.url, 'POST', '/resources', { name: 'once-run', resource: 'app', pipeline: 'once-pipe', spec: {} })
    await runOf('once-run', finished, 'the run to finish')
    // Publish the same dispatch again, as a redelivery after a lost ack would deliver it.
    const history = await api(stack.url, 'GET', '/resources/app/once-run/history?kind=step.dispatched')
    expect(history.body.items).toHaveLength(1)
    const original = (await stack.connections.jsm.streams.getMessage('CONVEYOR_EVENTS', {
      seq: history.body.items[0].seq,
    }))!
    const ack = await stack.connections.js.publish(original.subject, original.data, { msgID: 'redelivery-1' })
    await eventually(async () => {
      const info = await stack.connections.jsm.consumers.info('CONVEYOR_EVENTS', 'driver_once_steps')
      return info.ack_floor.stream_seq >= ack.seq ? true : undefined
    }, 'the driver to ack the redelivery')
    expect(runs).toBe(1)
  })

  it('past the delivery limit a step fails with a reason saying so', async () => {
    let entered = false
    const first = await serve(
      'vanishing',
      async (ctx) => {
        entered = true
        await until(ctx.signal)
        throw new Error('shut down mid-step')
      },
      { maxDeliver: 1, shutdownGraceMs: 0 },
    )
    await api(stack.url, 'POST', '/pipelines', {
      name: 'vanish',
      resource: 'app',
      steps: [{ id: 'gone', driver: 'vanishing', retries: 3 }],
    })
    await api(stack.url, 'POST', '/resources', { name: 'vanish-run', resource: 'app', pipeline: 'vanish', spec: {} })
    await eventually(() => (entered ? true : undefined), 'the first delivery')
    await first.close()
    await serve('vanishing', () => ({ success: true }), { maxDeliver: 1 })
    const done = await runOf('vanish-run', finished, 'the run to give up')
    expect(done.status.pipeline.status).toBe('failed')
    expect(stepsOf(done).gone.message).toMatch(/gave up: step gone was started 1 more times than it was dispatched/)
  })

  it('{success:false} fails a step at once; a long step heartbeats and is not redelivered while alive', async () => {
    let falseRuns = 0
    await serve('says-no', () => {
      falseRuns++
      return { success: false, message: 'lint errors' }
    })
    const longAttempts: number[] = []
    await serve(
      'long-haul',
      async (ctx) => {
        longAttempts.push(ctx.attempt)
        await new Promise((resolve) => setTimeout(resolve, 2500))
        return { success: true }
      },
      { ackWaitMs: 1000 },
    )
    await api(stack.url, 'POST', '/pipelines', {
      name: 'no-pipe',
      resource: 'app',
      steps: [{ id: 'lint', driver: 'says-no', retries: 5 }],
    })
    await api(stack.url, 'POST', '/pipelines', {
      name: 'long-pipe',
      resource: 'app',
      steps: [{ id: 'haul', driver: 'long-haul' }],
    })
    await api(stack.url, 'POST', '/resources', { name: 'no-run', resource: 'app', pipeline: 'no-pipe', spec: {} })
    await api(stack.url, 'POST', '/resources', { name: 'long-run', resource: 'app', pipeline: 'long-pipe', spec: {} })
    const no = await runOf('no-run', finished, 'the failing run')
    expect(stepsOf(no).lint).toMatchObject({ status: 'failed', attempt: 1, message: 'lint errors' })
    expect(falseRuns).toBe(1)
    const long = await runOf('long-run', finished, 'the long run')
    expect(long.status.pipeline.status).toBe('succeeded')
    expect(longAttempts).toEqual([1])
  })

  it('respects concurrency per instance, and a slow driver does not hold up another driver', async () => {
    let inFlight = 0
    let most = 0
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => (release = resolve))
    await serve(
      'one-at-a-time',
      async () => {
        inFlight++
        most = Math.max(most, inFlight)
        await gate
        inFlight--
        return { success: true }
      },
      { concurrency: 1 },
    )
    await serve('quick', () => ({ success: true }))
    await api(stack.url, 'POST', '/pipelines', {
      name: 'slow-lane',
      resource: 'app',
      steps: [{ id: 'wait', driver: 'one-at-a-time' }],
    })
    await api(stack.url, 'POST', '/pipelines', {
      name: 'fast-lane',
      resource: 'app',
      steps: [{ id: 'go', driver: 'quick' }],
    })
    for (const i of [1, 2, 3])
      await api(stack.url, 'POST', '/resources', {
        name: `slow-${i}`,
        resource: 'app',
        pipeline: 'slow-lane',
        spec: {},
      })
    await eventually(() => (inFlight === 1 ? true : undefined), 'the slow driver to hold its one slot')
    await api(stack.url, 'POST', '/resources', { name: 'fast-1', resource: 'app', pipeline: 'fast-lane', spec: {} })
    expect((await runOf('fast-1', finished, 'the fast run while the slow one waits')).status.pipeline.status).toBe(
      'succeeded',
    )
    release()
    for (const i of [1, 2, 3])
      expect((await runOf(`slow-${i}`, finished, `slow run ${i}`)).status.pipeline.status).toBe('succeeded')
    expect(most).toBe(1)
  })

  it('replacing a resource cancels its running step and starts a new run; deleting cancels too; drivers of the type skip pipeline resources', async () => {
    const seen: string[] = []
    const watcher = await runDriver(
      defineDriver({ name: 'type-watcher', resources: ['app'], reconcile: (ctx) => void seen.push(ctx.resource.name) }),
      { connections: stack.connections, logger: quiet },
    )
    stack.drivers.push(watcher)
    const aborted: string[] = []
    const starts: string[] = []
    await serve('blocker', async (ctx) => {
      starts.push(ctx.runid)
      await until(ctx.signal)
      aborted.push(ctx.runid)
      return { success: false }
    })
    await api(stack.url, 'POST', '/pipelines', {
      name: 'blocking',
      resource: 'app',
      steps: [{ id: 'block', driver: 'blocker' }],
    })
    const first = await api(stack.url, 'POST', '/resources', {
      name: 'replace-me',
      resource: 'app',
      pipeline: 'blocking',
      spec: { n: 1 },
    })
    await eventually(() => (starts.includes(first.body.runid) ? true : undefined), 'the first run to start')
    const replaced = await api(stack.url, 'PUT', '/resources/app/replace-me', {
      name: 'replace-me',
      resource: 'app',
      pipeline: 'blocking',
      spec: { n: 2 },
    })
    expect(replaced.status).toBe(200)
    expect(replaced.body.runid).not.toBe(first.body.runid)
    await eventually(() => (aborted.includes(first.body.runid) ? true : undefined), 'the old run step to be aborted')
    await eventually(() => (starts.includes(replaced.body.runid) ? true : undefined), 'the new run to start')
    // The replaced run ended: its log stream closes and its history says so.
    const oldLog = await (await fetch(`${stack.url}/logs/pipeline/${first.body.runid}`)).text()
    expect(oldLog).toMatch(/event: end\ndata: \{"event":"end".*"success":false/)
    const ended = await api(stack.url, 'GET', '/resources/app/replace-me/history?kind=run.finished')
    expect(ended.body.items.map((i: any) => `${i.event.runid === first.body.runid}:${i.event.status}`)).toEqual([
      'true:cancelled',
    ])
    expect((await api(stack.url, 'DELETE', '/resources/app/replace-me')).status).toBe(200)
    await eventually(
      () => (aborted.includes(replaced.body.runid) ? true : undefined),
      'the deleted run step to be aborted',
    )
    // A resource without a pipeline goes to the drivers of its type; one with a pipeline does not.
    await api(stack.url, 'POST', '/resources', { name: 'plain', resource: 'app', spec: {} })
    await eventually(() => (seen.includes('plain') ? true : undefined), 'the type driver to see the plain resource')
    expect(seen.filter((name) => name !== 'plain')).toEqual([])
  })
})
