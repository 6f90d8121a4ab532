import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { sendToActor } from '../runtime/inbox.ts'
import { keys } from '../runtime/keys.ts'
import { readPrefix } from '../runtime/etcd-ops.ts'
import { HistoryReader } from '../gateway/history-reader.ts'
import { ConveyorProcess } from './processes.ts'

const ACTORS = 500
const EVENTS_PER_ACTOR = 10

let stack: Stack
const workers: ConveyorProcess[] = []

beforeAll(async () => {
  stack = await startStack()
})
afterAll(async () => {
  for (const worker of workers) worker.kill('SIGKILL')
  await Promise.all(workers.map((w) => w.exited))
  await stack?.close()
})

const claimOwners = async (): Promise<Set<string>> =>
  new Set(
    (await readPrefix(stack.connections.etcd, keys.partitionClaims())).values.filter(() => true).map((v) => v.value),
  )

describe('actor workers scale out and survive a kill -9', () => {
  it(`3 workers, ${ACTORS} actors, ${ACTORS * EVENTS_PER_ACTOR} concurrent events, one worker killed and another started: every event applied once, in order`, async () => {
    const env = {
      ...stack.env,
      CONVEYOR_WORKER_LEASE_TTL: '2',
      CONVEYOR_DATA_DIR: '/tmp/conveyor-unused',
      CONVEYOR_LOG_LEVEL: 'info',
    }
    for (let i = 0; i < 3; i++) workers.push(new ConveyorProcess(['worker'], env))
    await Promise.all(workers.map((w) => w.waitFor(/worker \S+ running/)))
    await eventually(
      async () => {
        const claims = await readPrefix(stack.connections.etcd, keys.partitionClaims())
        return claims.values.length === 64 && new Set(claims.values.map((v) => v.value)).size === 3 ? true : undefined
      },
      'three workers sharing the 64 partitions',
      20_000,
    ).catch(async (error: unknown) => {
      const claims = await readPrefix(stack.connections.etcd, keys.partitionClaims())
      throw new Error(
        `${String(error)}; claims ${claims.values.length} by ${[...new Set(claims.values.map((v) => v.value))].join(',')}\n${workers.map((w, i) => `worker ${i}: ${w.output}`).join('\n')}`,
      )
    })

    const lifecycle = {
      initial: 'open',
      context: { count: 0, seen: [] },
      states: {
        open: {
          on: {
            INC: { actions: { type: 'assign', params: { count: { $inc: 1 }, seen: { $append: { $event: 'n' } } } } },
          },
        },
      },
    }
    expect(
      (
        await api(stack.url, 'POST', '/resource-definitions', {
          name: 'tally',
          version: '1',
          schema: { type: 'object' },
          lifecycle,
        })
      ).status,
    ).toBe(201)
    const names = Array.from({ length: ACTORS }, (_, i) => `a-${i}`)
    for (let i = 0; i < names.length; i += 50)
      await Promise.all(
        names
          .slice(i, i + 50)
          .map((name) => api(stack.url, 'POST', '/resources', { name, resource: 'tally', spec: {} })),
      )

    let published = 0
    let killed = false
    const chaos = async (): Promise<void> => {
      await eventually(
        () => (published >= (ACTORS * EVENTS_PER_ACTOR) / 3 ? true : undefined),
        'a third of the events',
        60_000,
      )
      workers[0]!.kill('SIGKILL')
      killed = true
      workers.push(new ConveyorProcess(['worker'], env))
    }
    const chaosDone = chaos()
    // Per actor, events are sent in order; actors send concurrently.
    const queue = [...names]
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
          for (let n = 1; n <= EVENTS_PER_ACTOR; n++) {
            await sendToActor(stack.connections.publisher, 'tally', name, { type: 'INC', id: `${name}-${n}`, n })
            published++
          }
        }
      }),
    )
    await chaosDone
    expect(killed).toBe(true)

    const expected = Array.from({ length: EVENTS_PER_ACTOR }, (_, i) => i + 1)
    await eventually(
      async () => {
        const list = await api(stack.url, 'GET', `/resources/tally?limit=${ACTORS}`)
        return list.body.items.length === ACTORS &&
          list.body.items.every((r: any) => r.status.context.count === EVENTS_PER_ACTOR)
          ? true
          : undefined
      },
      'every actor to count all its events',
      60_000,
    )
    const list = await api(stack.url, 'GET', `/resources/tally?limit=${ACTORS}`)
    for (const resource of list.body.items) {
      expect(resource.status.context.seen).toEqual(expected)
      expect(resource.status.seq).toBe(EVENTS_PER_ACTOR)
    }
    const reader = new HistoryReader(stack.connections)
    try {
      for (const name of names.filter((_, i) => i % 10 === 0)) {
        const history = await reader.page('tally', name, 0, 100, new Set(['transitioned']))
        expect(history.items.map((h) => h.event.seq)).toEqual(expected)
        expect(history.items.map((h) => h.event.event?.n)).toEqual(expected)
      }
    } finally {
      reader.close()
    }
    await eventually(
      async () => ((await claimOwners()).size === 3 ? true : undefined),
      'the partitions to be spread over the three live workers',
      20_000,
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}\n${workers.map((w, i) => `worker ${i}: ${w.output}`).join('\n')}`)
    })
  }, 240_000)
})
