import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomUUID } from 'node:crypto'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { startWorker, type ActorWorker } from '../actors/worker/worker.ts'
import { sendToActor } from '../runtime/inbox.ts'
import { keys } from '../runtime/keys.ts'
import { createLogger } from '../runtime/logger.ts'
import { defineDriver, runDriver } from 'conveyor'

let stack: Stack
let worker: ActorWorker

const counter = {
  id: 'counter',
  initial: 'open',
  context: { count: 0, seen: [] },
  states: {
    open: {
      tags: ['accepting'],
      on: {
        INC: { actions: { type: 'assign', params: { count: { $inc: 1 }, seen: { $append: { $event: 'n' } } } } },
        CLOSE: { target: 'closed', actions: [{ type: 'assign', params: { closedBy: { $event: 'by' } } }] },
      },
    },
    closed: { type: 'final' },
  },
}

beforeAll(async () => {
  stack = await startStack()
  worker = await startWorker({
    connections: stack.connections,
    leaseTtlSeconds: 2,
    logger: createLogger('worker', 'error'),
  })
  await eventually(() => (worker.owned().size === 64 ? true : undefined), 'the worker to own every partition')
  expect(
    (
      await api(stack.url, 'POST', '/resource-definitions', {
        name: 'counter',
        version: '1',
        schema: { type: 'object' },
        lifecycle: counter,
      })
    ).status,
  ).toBe(201)
  expect(
    (await api(stack.url, 'POST', '/resource-definitions', { name: 'plain', version: '1', schema: { type: 'object' } }))
      .status,
  ).toBe(201)
})
afterAll(async () => {
  await worker?.close()
  await stack?.close()
})

const send = (type: string, name: string, event: Record<string, unknown>) =>
  api(stack.url, 'POST', `/resources/${type}/${name}/events`, event)

describe('lifecycles are checked when a definition is saved', () => {
  it('names the path of an unknown target, a missing initial state and an unknown action', async () => {
    const response = await api(stack.url, 'POST', '/resource-definitions', {
      name: 'broken',
      version: '1',
      schema: { type: 'object' },
      lifecycle: {
        states: { a: { on: { GO: 'nowhere', RUN: { target: 'b', actions: ['shell'] } } }, b: { type: 'final' } },
      },
    })
    expect(response.status).toBe(400)
    expect(response.body.errors).toEqual(
      expect.arrayContaining([
        { path: '/lifecycle/initial', message: expect.stringMatching(/required/) },
        { path: '/lifecycle/states/a/on/GO', message: 'unknown target state "nowhere"' },
        { path: '/lifecycle/states/a/on/RUN/actions/0', message: expect.stringMatching(/unknown action "shell"/) },
      ]),
    )
    const malformed = await api(stack.url, 'POST', '/resource-definitions', {
      name: 'broken',
      version: '1',
      schema: { type: 'object' },
      lifecycle: 'pending -> done',
    })
    expect(malformed.status).toBe(400)
    expect(malformed.body.errors[0].path).toBe('/lifecycle')
  })
})

describe('the events API', () => {
  it('applies an event and answers with the new state and revision; the built-in lifecycle runs pending → running → succeeded', async () => {
    const created = await api(stack.url, 'POST', '/resources', { name: 'job-1', resource: 'plain', spec: {} })
    expect(created.body.status.state).toBe('pending')
    const started = await send('plain', 'job-1', { type: 'START' })
    expect(started.status).toBe(200)
    expect(started.body).toMatchObject({
      from: 'pending',
      to: 'running',
      state: 'running',
      done: false,
      revision: expect.any(Number),
    })
    expect(started.body.revision).toBeGreaterThan(created.body.metadata.revision)
    const succeeded = await send('plain', 'job-1', { type: 'SUCCEED' })
    expect(succeeded.body).toMatchObject({ state: 'succeeded', done: true })
    const resource = await api(stack.url, 'GET', '/resources/plain/job-1')
    expect(resource.body.status).toMatchObject({ state: 'succeeded', done: true, seq: 2 })
  })

  it('answers 409 for an event the state does not accept, or any event once final, and 404 for a missing resource', async () => {
    await api(stack.url, 'POST', '/resources', { name: 'job-2', resource: 'plain', spec: {} })
    const wrong = await send('plain', 'job-2', { type: 'SUCCEED_LATER' })
    expect(wrong.status).toBe(409)
    expect(wrong.headers.get('content-type')).toBe('application/problem+json')
    expect(wrong.body).toMatchObject({ status: 409, state: 'pending' })
    expect(wrong.body.accepts.sort()).toEqual(['CANCEL', 'FAIL', 'START', 'SUCCEED'])
    expect((await send('plain', 'job-2', { type: 'CANCEL' })).body.state).toBe('cancelled')
    const late = await send('plain', 'job-2', { type: 'START' })
    expect(late.status).toBe(409)
    expect(late.body.detail).toMatch(/final state cancelled/)
    expect((await send('plain', 'ghost', { type: 'START' })).status).toBe(404)
  })

  it('refuses malformed and oversized events with 4xx, and none of them wedges the mailbox', async () => {
    await api(stack.url, 'POST', '/resources', { name: 'tough', resource: 'counter', spec: {} })
    expect((await send('counter', 'tough', { n: 1 })).status).toBe(400)
    expect((await send('counter', 'tough', { type: 'xstate.after.1.x' })).status).toBe(400)
    expect((await send('counter', 'tough', { type: 'INC', id: 'has spaces' })).status).toBe(400)
    expect((await api(stack.url, 'POST', '/resources/counter/tough/events', '{"type": "INC",')).status).toBe(400)
    expect((await send('counter', 'tough', { type: 'INC', blob: 'x'.repeat(70 * 1024) })).status).toBe(413)
    expect((await send('counter', 'tough', { type: 'NOPE' })).status).toBe(409)
    const ok = await send('counter', 'tough', { type: 'INC', n: 7 })
    expect(ok.status).toBe(200)
    expect(ok.body.context).toEqual({ count: 1, seen: [7] })
  })

  it('applies an event id once: a client retry answers with the state, not a second transition', async () => {
    await api(stack.url, 'POST', '/resources', { name: 'idem', resource: 'counter', spec: {} })
    const first = await send('counter', 'idem', { type: 'INC', id: 'retry-me', n: 1 })
    const again = await send('counter', 'idem', { type: 'INC', id: 'retry-me', n: 1 })
    expect(first.body.context.count).toBe(1)
    expect(again.status).toBe(200)
    expect(again.body).toMatchObject({ duplicate: true, context: { count: 1 } })
    // Past JetStream's duplicate window the actor still knows the id (a new message, same event id).
    await stack.connections.js.publish(
      `conveyor.in.${keys.actor('counter', 'idem').split('/')[3]}.counter.idem`,
      JSON.stringify({ type: 'INC', id: 'retry-me', n: 1 }),
    )
    const later = await send('counter', 'idem', { type: 'INC', id: 'after', n: 2 })
    expect(later.body.context).toEqual({ count: 2, seen: [1, 2] })
  })

  it('group-commits a hot actor: many pending events share transactions, all applied once and in order', async () => {
    await api(stack.url, 'POST', '/resources', { name: 'hot', resource: 'counter', spec: {} })
    const total = 300
    await Promise.all(
      Array.from({ length: total }, (_, i) =>
        sendToActor(stack.connections.publisher, 'counter', 'hot', { type: 'INC', id: `hot-${i}`, n: i }),
      ),
    )
    const resource = await eventually(async () => {
      const current = await api(stack.url, 'GET', '/resources/counter/hot')
      return current.body.status.context.count === total ? current.body : undefined
    }, 'all hot events')
    expect(resource.status.context.seen).toEqual(Array.from({ length: total }, (_, i) => i))
    const history = await api(stack.url, 'GET', `/resources/counter/hot/history?kind=transitioned&limit=1000`)
    expect(history.body.items).toHaveLength(total)
    expect(history.body.items.map((h: any) => h.event.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    const revisions = new Set(history.body.items.map((h: any) => h.event.revision))
    expect(revisions.size).toBeLessThan(total / 2)
  })
})

describe('drivers drive the lifecycle', () => {
  it('a driver sends events to its resource through NATS with ctx.send', async () => {
    const handle = await runDriver(
      defineDriver({
        name: 'lifecycle-driver',
        resources: ['plain'],
        async reconcile(ctx) {
          await ctx.send({ type: 'START' })
          await ctx.send({ type: 'SUCCEED', id: `done-${ctx.runid}` })
          return { success: true }
        },
      }),
      { connections: stack.connections, logger: createLogger('driver', 'error') },
    )
    try {
      await api(stack.url, 'POST', '/resources', { name: 'driven', resource: 'plain', spec: {} })
      await eventually(
        async () =>
          (await api(stack.url, 'GET', '/resources/plain/driven')).body.status.state === 'succeeded' ? true : undefined,
        'the driver to finish the run',
      )
      const history = await api(stack.url, 'GET', '/resources/plain/driven/history?kind=transitioned')
      expect(history.body.items.map((h: any) => `${h.event.from}->${h.event.to}`)).toEqual([
        'pending->running',
        'running->succeeded',
      ])
    } finally {
      await handle.close()
    }
  })
})

describe('inspection', () => {
  it('shows state, context, accepted events, the machine, the revision and a Mermaid diagram', async () => {
    await api(stack.url, 'POST', '/resources', { name: 'look', resource: 'counter', spec: {} })
    await send('counter', 'look', { type: 'INC', n: 1 })
    const actor = await api(stack.url, 'GET', '/resources/counter/look/actor')
    expect(actor.status).toBe(200)
    expect(actor.body.accepts.sort()).toEqual(['CLOSE', 'INC'])
    expect(actor.body).toMatchObject({
      state: 'open',
      status: 'active',
      context: { count: 1 },
      seq: 1,
      revision: expect.any(Number),
      lifecycle: { machine: counter },
    })
    expect(actor.body.tags).toEqual(['accepting'])
    expect(actor.body.mermaid).toContain('stateDiagram-v2')
    expect(actor.body.mermaid).toContain('open --> closed : CLOSE')
    expect(actor.body.mermaid).toContain('class open current')
    expect((await api(stack.url, 'GET', '/resources/counter/nobody/actor')).status).toBe(404)
  })

  it('pages through history in order', async () => {
    await api(stack.url, 'POST', '/resources', { name: 'paged', resource: 'counter', spec: {} })
    for (let n = 1; n <= 5; n++) await send('counter', 'paged', { type: 'INC', n })
    await send('counter', 'paged', { type: 'CLOSE', by: 'me' })
    const seen: string[] = []
    let after = 0
    for (let page = 0; page < 10; page++) {
      const response = await api(
        stack.url,
        'GET',
        `/resources/counter/paged/history?limit=2${after ? `&after=${after}` : ''}`,
      )
      seen.push(...response.body.items.map((h: any) => `${h.kind}:${h.event.to ?? ''}`))
      if (response.body.next === undefined) break
      after = response.body.next
    }
    expect(seen).toEqual([
      'created:',
      'transitioned:open',
      'transitioned:open',
      'transitioned:open',
      'transitioned:open',
      'transitioned:open',
      'transitioned:closed',
    ])
  })
})

describe('resources and their actors', () => {
  it('a PUT starts a new run from the initial state; a delete leaves a tombstone that answers 404', async () => {
    const created = await api(stack.url, 'POST', '/resources', { name: 'rerun', resource: 'counter', spec: {} })
    await send('counter', 'rerun', { type: 'CLOSE', by: 'x' })
    const updated = await api(stack.url, 'PUT', '/resources/counter/rerun', { ...created.body, spec: { v: 2 } })
    expect(updated.body.status).toMatchObject({ state: 'open', context: { count: 0 } })
    expect((await send('counter', 'rerun', { type: 'INC', n: 1, id: randomUUID() })).body.context.count).toBe(1)
    await api(stack.url, 'DELETE', '/resources/counter/rerun')
    // The tombstone stays until its durable timer removes it, so each driver handles the deletion once.
    const tombstone = JSON.parse((await stack.connections.etcd.get(keys.actor('counter', 'rerun')).string())!)
    expect(tombstone).toMatchObject({ uid: created.body.metadata.uid, deletedAt: expect.any(String), drivers: {} })
    expect(tombstone.timers).toEqual([
      expect.objectContaining({ event: { type: 'conveyor.tombstone.expire', uid: created.body.metadata.uid } }),
    ])
    expect((await send('counter', 'rerun', { type: 'INC', n: 1 })).status).toBe(404)
  })
})
