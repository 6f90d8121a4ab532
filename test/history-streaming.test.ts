import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Subscription } from '@nats-io/transport-node'
import { subjects, streams } from '../runtime/keys.ts'
import { api, eventually, startStack, type Stack } from './harness.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack({ worker: true })
  const lifecycle = {
    initial: 'open',
    context: { total: 0 },
    states: { open: { on: { ADD: { actions: { type: 'assign', params: { total: { $inc: 1 } } } } } } },
  }
  expect(
    (
      await api(stack.url, 'POST', '/resource-definitions', {
        name: 'tape',
        version: '1',
        schema: { type: 'object' },
        lifecycle,
      })
    ).status,
  ).toBe(201)
})
afterAll(async () => {
  await stack?.close()
})

/** Counts the consumers JetStream creates on the events stream, from its advisories. */
function countConsumersCreated(): { readonly count: () => number; stop(): void } {
  let created = 0
  const subscription: Subscription = stack.connections.nats.subscribe(
    `$JS.EVENT.ADVISORY.CONSUMER.CREATED.${streams.events}.*`,
    { callback: () => void created++ },
  )
  return { count: () => created, stop: () => subscription.unsubscribe() }
}

/** Publishes `count` `transitioned` events (ADD, open → open, seq 1…count) into a resource's history. */
async function seedTransitions(type: string, name: string, uid: string, runid: string, count: number): Promise<void> {
  const subject = subjects.outcome(type, name, 'transitioned')
  for (let start = 0; start < count; start += 500)
    await Promise.all(
      Array.from({ length: Math.min(500, count - start) }, (_, i) => {
        const seq = start + i + 1
        const event = {
          kind: 'transitioned',
          uid,
          revision: seq,
          time: new Date().toISOString(),
          type,
          name,
          runid,
          from: 'open',
          to: 'open',
          event: { type: 'ADD' },
          seq,
        }
        return stack.connections.publisher.publish(subject, JSON.stringify(event), {
          msgID: `seed-${name}:${seq}`,
          headers: { 'Conveyor-Kind': 'transitioned' },
        })
      }),
    )
}

describe('history and verify read a long history through one consumer', () => {
  const EVENTS = 2_500

  it(
    'history pages continue one consumer; a filtered page says there is more only when there is',
    {
      timeout: 60_000,
    },
    async () => {
      const reply = await api(stack.url, 'POST', '/resources', { name: 'long', resource: 'tape', spec: {} })
      expect(reply.status).toBe(201)
      await api(stack.url, 'PUT', '/resources/tape/long', { name: 'long', resource: 'tape', spec: { v: 2 } })
      await eventually(async () => {
        const page = await api(stack.url, 'GET', '/resources/tape/long/history?kind=updated')
        return page.body.items.length === 1 ? true : undefined
      }, 'the update in the history')
      // The run the actor is in now (an update may start a new one).
      const actor = await api(stack.url, 'GET', '/resources/tape/long/actor')
      await seedTransitions('tape', 'long', reply.body.metadata.uid, actor.body.runid, EVENTS)

      // One created among thousands of transitions: no `next` once the only one was returned.
      const filtered = await api(stack.url, 'GET', '/resources/tape/long/history?kind=created&limit=1')
      expect(filtered.body.items.map((item: any) => item.kind)).toEqual(['created'])
      expect(filtered.body.next).toBeUndefined()

      const consumers = countConsumersCreated()
      const seqs: number[] = []
      let pages = 0
      for (let after = 0; ; pages++) {
        const page = await api(
          stack.url,
          'GET',
          `/resources/tape/long/history?limit=500${after ? `&after=${after}` : ''}`,
        )
        expect(page.status).toBe(200)
        seqs.push(...page.body.items.map((item: any) => item.seq as number))
        if (page.body.next === undefined) break
        after = page.body.next
      }
      await stack.connections.nats.flush()
      consumers.stop()
      expect(seqs).toHaveLength(EVENTS + 2)
      expect(new Set(seqs).size).toBe(seqs.length)
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
      expect(pages).toBeGreaterThanOrEqual(5)
      expect(consumers.count()).toBe(1)
    },
  )

  it('verify folds the whole history through one consumer', { timeout: 60_000 }, async () => {
    const consumers = countConsumersCreated()
    const verified = await api(stack.url, 'GET', '/resources/tape/long/verify')
    await stack.connections.nats.flush()
    consumers.stop()
    expect(verified.status).toBe(200)
    // The seeded transitions were never applied to the actor: the fold has them all, etcd none.
    expect(verified.body).toMatchObject({
      ok: false,
      events: EVENTS,
      rebuilt: { seq: EVENTS, context: { total: EVENTS } },
      stored: { seq: 0 },
      divergence: { reason: `etcd holds 0 applied events, the history ${EVENTS}` },
    })
    expect(consumers.count()).toBe(1)
  })
})
