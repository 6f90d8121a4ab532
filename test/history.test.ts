import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { defineDriver, runDriver, type DriverContext, type RunningDriver } from 'conveyor'
import { announceDriver } from '../runtime/driver-registry.ts'
import { createLogger } from '../runtime/logger.ts'
import { keys } from '../runtime/keys.ts'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { ConveyorProcess } from './processes.ts'

let stack: Stack
const quiet = createLogger('test', 'error')

beforeAll(async () => {
  stack = await startStack({ worker: true })
  const lifecycle = {
    initial: 'open',
    context: { total: 0 },
    states: {
      open: { on: { ADD: { actions: { type: 'assign', params: { total: { $inc: 1 } } } }, CLOSE: 'closed' } },
      closed: { type: 'final' },
    },
  }
  expect(
    (
      await api(stack.url, 'POST', '/resource-definitions', {
        name: 'ledger',
        version: '1',
        schema: { type: 'object' },
        lifecycle,
      })
    ).status,
  ).toBe(201)
  expect(
    (await api(stack.url, 'POST', '/resource-definitions', { name: 'job', version: '1', schema: { type: 'object' } }))
      .status,
  ).toBe(201)
})
afterAll(async () => {
  await stack?.close()
})

async function cli(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = new ConveyorProcess([...args, '--api', stack.url], stack.env)
  const { code } = await child.exited
  return { code, output: child.output }
}

async function serve(
  name: string,
  resources: string[],
  reconcile: (ctx: DriverContext) => unknown,
): Promise<RunningDriver> {
  const running = await runDriver(defineDriver({ name, resources, reconcile: reconcile as never }), {
    connections: stack.connections,
    logger: quiet,
  })
  stack.drivers.push(running)
  return running
}

describe('history, verify and time travel', () => {
  it('lists a resource’s events in order with sequence, time and kind; pages by sequence; filters by kind; and the CLI prints them', async () => {
    const created = await api(stack.url, 'POST', '/resources', { name: 'book', resource: 'ledger', spec: { v: 1 } })
    for (let i = 0; i < 3; i++)
      expect(
        (await api(stack.url, 'POST', '/resources/ledger/book/events', { type: 'ADD', id: `add-${i}` })).status,
      ).toBe(200)
    await api(stack.url, 'PUT', '/resources/ledger/book', { name: 'book', resource: 'ledger', spec: { v: 2 } })
    await api(stack.url, 'DELETE', '/resources/ledger/book')
    const all = await eventually(async () => {
      const got = await api(stack.url, 'GET', '/resources/ledger/book/history')
      return got.body.items.some((i: any) => i.kind === 'deleted') ? got.body : undefined
    }, 'the delete in the history')
    expect(all.items.map((i: any) => i.kind)).toEqual([
      'created',
      'transitioned',
      'transitioned',
      'transitioned',
      'updated',
      'deleted',
    ])
    const seqs = all.items.map((i: any) => i.seq)
    expect(seqs).toEqual([...seqs].sort((a: number, b: number) => a - b))
    expect(all.items[0]).toMatchObject({
      kind: 'created',
      time: expect.any(String),
      event: { uid: created.body.metadata.uid, object: { spec: { v: 1 } } },
    })
    expect(all.items[1].event).toMatchObject({ from: 'open', to: 'open', event: { type: 'ADD' }, seq: 1 })

    const first = await api(stack.url, 'GET', '/resources/ledger/book/history?limit=2')
    expect(first.body.items.map((i: any) => i.seq)).toEqual(seqs.slice(0, 2))
    const second = await api(stack.url, 'GET', `/resources/ledger/book/history?limit=2&after=${first.body.next}`)
    expect(second.body.items.map((i: any) => i.seq)).toEqual(seqs.slice(2, 4))
    const filtered = await api(stack.url, 'GET', '/resources/ledger/book/history?kind=updated,deleted')
    expect(filtered.body.items.map((i: any) => i.kind)).toEqual(['updated', 'deleted'])

    const printed = await cli(['history', 'ledger/book'])
    expect(printed.code).toBe(0)
    const lines = printed.output.trim().split('\n')
    expect(lines).toHaveLength(6)
    expect(lines[1]).toMatch(/^\s*\d+ {2}\S+ {2}transitioned\s+open → open on ADD \(seq 1\)$/)
    // A resource that never existed is an error naming it, not an empty answer.
    const missing = await cli(['history', 'ledger/nothing-here'])
    expect(missing.code).toBe(1)
    expect(missing.output).toMatch(/404 .*nothing-here/)
    const bad = await cli(['history', 'not-a-path'])
    expect(bad.code).toBe(1)
    expect(bad.output).toMatch(/usage: conveyor history TYPE\/NAME/)
  })

  it('verify folds the history through the machine and names the first divergence from etcd', async () => {
    await api(stack.url, 'POST', '/resources', { name: 'tally', resource: 'ledger', spec: {} })
    for (let i = 0; i < 5; i++)
      await api(stack.url, 'POST', '/resources/ledger/tally/events', { type: 'ADD', id: `t-${i}` })
    const good = await eventually(async () => {
      const got = await api(stack.url, 'GET', '/resources/ledger/tally/verify')
      return got.body.events === 5 ? got.body : undefined
    }, 'five transitions in the history')
    expect(good).toMatchObject({
      ok: true,
      rebuilt: { state: 'open', context: { total: 5 }, seq: 5 },
      stored: { seq: 5 },
    })
    expect((await cli(['verify', 'ledger/tally'])).output).toMatch(/^ok {7}ledger\/tally: 5 event\(s\)/)

    // Tamper with the stored actor: the rebuild disagrees, and says where.
    const key = keys.actor('ledger', 'tally')
    const record = JSON.parse((await stack.connections.etcd.get(key).string())!)
    await stack.connections.etcd
      .put(key)
      .value(JSON.stringify({ ...record, snapshot: { ...record.snapshot, context: { total: 50 } } }))
    const context = await api(stack.url, 'GET', '/resources/ledger/tally/verify')
    expect(context.body).toMatchObject({
      ok: false,
      divergence: {
        seq: 0,
        reason: 'the rebuilt context differs from the stored one',
        expected: { total: 50 },
        got: { total: 5 },
      },
    })
    await stack.connections.etcd.put(key).value(JSON.stringify({ ...record, seq: 7 }))
    const missing = await api(stack.url, 'GET', '/resources/ledger/tally/verify')
    expect(missing.body).toMatchObject({
      ok: false,
      divergence: { seq: 6, reason: 'etcd holds 7 applied events, the history 5' },
    })
    const printed = await cli(['verify'])
    expect(printed.code).toBe(1)
    expect(printed.output).toMatch(/MISMATCH ledger\/tally at event 6: etcd holds 7 applied events, the history 5/)
    await stack.connections.etcd.put(key).value(JSON.stringify(record))
  })

  it('time travel: a resource as it was at a revision; 404 before it existed, 400 ahead of the store, 410 once compacted', async () => {
    const created = await api(stack.url, 'POST', '/resources', { name: 'trip', resource: 'ledger', spec: { leg: 1 } })
    const r1 = created.body.metadata.revision
    await api(stack.url, 'POST', '/resources/ledger/trip/events', { type: 'ADD', id: 'trip-1' })
    const updated = await api(stack.url, 'PUT', '/resources/ledger/trip', {
      name: 'trip',
      resource: 'ledger',
      spec: { leg: 2 },
    })
    await api(stack.url, 'POST', '/resources/ledger/trip/events', { type: 'CLOSE', id: 'trip-2' })
    const then = await api(stack.url, 'GET', `/resources/ledger/trip?atRevision=${r1}`)
    expect(then.status).toBe(200)
    expect(then.body).toMatchObject({
      spec: { leg: 1 },
      version: 1,
      metadata: { revision: r1 },
      status: { state: 'open', context: { total: 0 } },
    })
    const later = await api(stack.url, 'GET', `/resources/ledger/trip?atRevision=${updated.body.metadata.revision}`)
    expect(later.body).toMatchObject({ spec: { leg: 2 }, version: 2 })
    expect((await api(stack.url, 'GET', '/resources/ledger/trip')).body.status.state).toBe('closed')
    expect((await api(stack.url, 'GET', `/resources/ledger/trip?atRevision=${r1 - 1}`)).status).toBe(404)
    const future = await api(stack.url, 'GET', '/resources/ledger/trip?atRevision=999999999')
    expect(future.status).toBe(400)
    expect(future.body.errors[0].path).toBe('?atRevision')
    const { header } = await stack.connections.etcd.kv.range({ key: Buffer.from('/conveyor/none') })
    await stack.connections.etcd.kv.compact({ revision: header.revision })
    const gone = await api(stack.url, 'GET', `/resources/ledger/trip?atRevision=${r1}`)
    expect(gone.status).toBe(410)
    expect(gone.headers.get('content-type')).toContain('application/problem+json')
    expect(gone.body.detail).toMatch(new RegExp(`revision ${r1} has been compacted`))
  })
})

describe('replay', () => {
  it('re-delivers history to a driver through a new consumer, marked as replayed, with progress; finished work runs again only with force', async () => {
    for (const name of ['j1', 'j2', 'j3'])
      await api(stack.url, 'POST', '/resources', { name, resource: 'job', spec: {} })
    // The replay is waiting when the driver starts: its catch-up and the replay both bring the
    // three jobs, and the claims make each run exactly once. (A replay needs a driver seen before.)
    await (
      await announceDriver(
        stack.connections,
        { name: 'auditor', resources: ['job'], instance: 'earlier', version: 'test', concurrency: 1 },
        quiet,
      )
    ).close()
    await eventually(
      async () =>
        (await api(stack.url, 'GET', '/drivers')).body.items.some((d: any) => d.name === 'auditor') ? true : undefined,
      'the registry to know auditor',
    )
    const started = await api(stack.url, 'POST', '/replay', { driver: 'auditor', type: 'job', fromSequence: 1 })
    expect(started.status).toBe(201)
    expect(started.body).toMatchObject({ driver: 'auditor', status: 'running', total: 3, delivered: 0 })
    const calls: { name: string; replayed: boolean }[] = []
    const auditor = await serve('auditor', ['job'], (ctx) => {
      calls.push({ name: ctx.resource.name, replayed: ctx.replayed })
      return { success: true }
    })

    const socket = new WebSocket(`${stack.url.replace('http://', 'ws://')}/ws`)
    const progress: any[] = []
    socket.on('message', (data) => progress.push(JSON.parse(data.toString())))
    await new Promise((resolve) => socket.once('open', resolve))
    socket.send(JSON.stringify({ op: 'replay', id: 'p', replay: started.body.id }))
    await eventually(
      () => (progress.some((p) => p.status === 'done') ? true : undefined),
      'the replay to finish',
      20_000,
    )
    socket.close()
    expect(progress.at(-1)).toMatchObject({ id: 'p', type: 'progress', delivered: 3, total: 3, status: 'done' })
    await auditor.caughtUp
    expect(calls.map((c) => c.name).sort()).toEqual(['j1', 'j2', 'j3'])
    expect((await api(stack.url, 'GET', '/resources/job/j2')).body.status.drivers.auditor.success).toBe(true)
    expect((await stack.connections.jsm.consumers.list('CONVEYOR_EVENTS').next()).map((c) => c.name)).not.toContain(
      started.body.consumer,
    )

    // Again without force: every outcome is recorded, nothing runs. With force, all of it runs again.
    const again = await cli(['replay', '--driver', 'auditor', '--type', 'job', '--from-seq', '1'])
    expect(again.code).toBe(0)
    // The range now also holds, per job, its START and SUCCEED transitions and the driver's result.
    expect(again.output).toMatch(/: 12\/12 delivered, done/)
    expect(calls).toHaveLength(3)
    const forced = await cli(['replay', '--driver', 'auditor', '--type', 'job', '--from-seq', '1', '--force'])
    expect(forced.output).toMatch(/\(force\)/)
    expect(calls).toHaveLength(6)
    expect(calls.slice(3).every((c) => c.replayed)).toBe(true)
  })

  it('does not re-execute completed pipeline steps unless forced', async () => {
    const runs: { runid: string; replayed: boolean }[] = []
    await serve('stepper', [], (ctx) => {
      runs.push({ runid: ctx.runid, replayed: ctx.replayed })
      return { success: true }
    })
    await api(stack.url, 'POST', '/pipelines', {
      name: 'stepping',
      resource: 'job',
      steps: [
        { id: 'one', driver: 'stepper' },
        { id: 'two', driver: 'stepper' },
      ],
    })
    const created = await api(stack.url, 'POST', '/resources', {
      name: 'piped',
      resource: 'job',
      pipeline: 'stepping',
      spec: {},
    })
    await eventually(
      async () =>
        (await api(stack.url, 'GET', '/resources/job/piped')).body.status.pipeline.status === 'succeeded'
          ? true
          : undefined,
      'the run to succeed',
    )
    expect(runs).toHaveLength(2)
    const plain = await api(stack.url, 'POST', '/replay', { driver: 'stepper', type: 'job', resource: 'piped' })
    await eventually(
      async () => ((await api(stack.url, 'GET', `/replay/${plain.body.id}`)).body.status === 'done' ? true : undefined),
      'the plain replay',
    )
    expect(runs).toHaveLength(2)
    const forced = await api(stack.url, 'POST', '/replay', {
      driver: 'stepper',
      type: 'job',
      resource: 'piped',
      force: true,
    })
    const done = await eventually(async () => {
      const got = await api(stack.url, 'GET', `/replay/${forced.body.id}`)
      return got.body.status === 'done' ? got.body : undefined
    }, 'the forced replay')
    expect(done.delivered).toBe(done.total)
    expect(runs.slice(2)).toEqual([
      { runid: created.body.runid, replayed: true },
      { runid: created.body.runid, replayed: true },
    ])
    expect((await api(stack.url, 'GET', '/resources/job/piped')).body.status.pipeline.status).toBe('succeeded')
    const bad = await api(stack.url, 'POST', '/replay', { driver: 'stepper', resource: 'piped' })
    expect(bad.status).toBe(400)
    expect(bad.body.errors[0].path).toBe('/type')
    // Ranges by time and by sequence.
    const future = await api(stack.url, 'POST', '/replay', {
      driver: 'stepper',
      since: new Date(Date.now() + 3_600_000).toISOString(),
    })
    expect(future.status).toBe(400)
    expect(future.body.detail).toMatch(/the range is empty/)
    const history = await api(stack.url, 'GET', '/resources/job/piped/history')
    const firstTwo = history.body.items.slice(0, 2)
    const bounded = await api(stack.url, 'POST', '/replay', {
      driver: 'stepper',
      type: 'job',
      resource: 'piped',
      fromSequence: firstTwo[0].seq,
      until: firstTwo[1].seq,
    })
    expect(bounded.body).toMatchObject({ total: 2, fromSequence: firstTwo[0].seq, untilSequence: firstTwo[1].seq })
    const byTime = await api(stack.url, 'POST', '/replay', {
      driver: 'stepper',
      type: 'job',
      resource: 'piped',
      since: firstTwo[0].time,
      until: history.body.items.at(-1).time,
    })
    expect(byTime.body.total).toBe(history.body.items.length)
    const badTime = await api(stack.url, 'POST', '/replay', { driver: 'stepper', since: 'yesterday-ish' })
    expect(badTime.status).toBe(400)
    expect(badTime.body.errors[0].path).toBe('/since')
  })
})
