import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { Outbox } from '../runtime/outbox.ts'
import { createLogger } from '../runtime/logger.ts'
import { keys, streams, subjects } from '../runtime/keys.ts'
import type { ConveyorEvent } from '../definitions/objects.ts'
import { Etcd3, GRPCResourceExhastedError } from 'etcd3'
import { etcdFaultHandling } from '../runtime/etcd-faults.ts'
import { readPrefix } from '../runtime/etcd-ops.ts'

// Issue 10, item 9: values of ~100 KB must never trip the etcd client. 500 of them per page are
// ~50 MB, past gRPC's 4 MiB receive limit: RESOURCE_EXHAUSTED used to count as a broken server and
// open the client's circuit breaker, so every request of the process answered 503 for 5 s.

let stack: Stack
const COUNT = 45
const big = (i: number): string => `${i}:`.padEnd(100_000, 'x')

beforeAll(async () => {
  stack = await startStack()
  const schema = { type: 'object', properties: { blob: { type: 'string' } } }
  expect((await api(stack.url, 'POST', '/resource-definitions', { name: 'w', schema })).status).toBe(201)
  for (let i = 0; i < COUNT; i += 5)
    await Promise.all(
      Array.from({ length: 5 }, async (_, j) => {
        const response = await api(stack.url, 'POST', '/resources', {
          name: `r${String(i + j).padStart(2, '0')}`,
          resource: 'w',
          spec: { blob: big(i + j) },
        })
        expect(response.status).toBe(201)
      }),
    )
})
afterAll(async () => stack?.close())

describe('big values and the etcd client', () => {
  it('lists 45 resources of 100 KB, paged, while every other request keeps answering', async () => {
    let listing = true
    const others: number[] = []
    const background = (async () => {
      while (listing) {
        const [definition, one] = await Promise.all([
          api(stack.url, 'GET', '/resource-definitions/w'),
          api(stack.url, 'GET', '/resources/w/r07'),
        ])
        others.push(definition.status, one.status)
      }
    })()
    try {
      for (let round = 0; round < 3; round++) {
        const all = await api(stack.url, 'GET', '/resources/w')
        expect(all.status).toBe(200)
        expect(all.body.items.map((r: { name: string }) => r.name)).toEqual(
          Array.from({ length: COUNT }, (_, i) => `r${String(i).padStart(2, '0')}`),
        )
        expect(all.body.items[3].spec.blob).toBe(big(3))
        const names: string[] = []
        let token: string | undefined
        do {
          const page = await api(stack.url, 'GET', `/resources/w?limit=20${token ? `&continue=${token}` : ''}`)
          expect(page.status).toBe(200)
          names.push(...page.body.items.map((r: { name: string }) => r.name))
          token = page.body.continue
        } while (token)
        expect(names).toHaveLength(COUNT)
      }
    } finally {
      listing = false
      await background
    }
    expect(others.length).toBeGreaterThan(0)
    expect(others.filter((status) => status !== 200)).toEqual([])
    expect((await api(stack.url, 'GET', '/ready')).status).toBe(200)
  })

  it('a backlog of big outbox entries is swept, not failed forever', async () => {
    const logger = createLogger('outbox-test', 'error')
    const outbox = new Outbox(stack.connections, logger)
    const ids: string[] = []
    for (let i = 0; i < COUNT; i++) {
      const id = `big-outbox-${i}`
      ids.push(id)
      const event = {
        kind: 'created',
        uid: id,
        revision: 0,
        time: new Date().toISOString(),
        type: 'outboxtest',
        name: `o${i}`,
        runid: id,
        version: 1,
        object: { spec: { blob: big(i) } },
      } as unknown as ConveyorEvent
      const { op } = outbox.entry(subjects.resource('outboxtest', `o${i}`, 'created'), event)
      await stack.connections.etcd.kv.txn({ success: [op] })
    }
    await eventually(
      async () => {
        await outbox.sweep()
        const left = await stack.connections.etcd.getAll().prefix(keys.outboxes()).count()
        return left === 0 ? true : undefined
      },
      'the sweeper to publish every big outbox entry',
      30_000,
    )
    const info = await stack.connections.jsm.streams.info(streams.events, {
      subjects_filter: 'conveyor.ev.resource.*.outboxtest.>',
    })
    expect(Object.keys(info.state.subjects ?? {})).toHaveLength(COUNT)
    await outbox.close()
  })

  it('an oversized response fails that read alone: it is not retried and opens no breaker', async () => {
    // A client that takes at most 1 MiB: a range over the 45 resources (4.5 MB) cannot fit.
    const small = (faultHandling?: ReturnType<typeof etcdFaultHandling>) =>
      new Etcd3({
        hosts: [...stack.servers.etcdEndpoints],
        auth: stack.servers.credentials.etcd,
        grpcOptions: { 'grpc.max_receive_message_length': 1024 * 1024 },
        ...(faultHandling ? { faultHandling } : {}),
      })
    const ours = small(etcdFaultHandling())
    for (let i = 0; i < 5; i++)
      await expect(ours.getAll().prefix(keys.resources('w')).strings()).rejects.toBeInstanceOf(
        GRPCResourceExhastedError,
      )
    expect(await ours.get(keys.resource('w', 'r01')).string()).toContain('r01')
    // Paged by size, the same read succeeds even through the small client.
    const { values } = await readPrefix(ours, keys.resources('w'))
    expect(values).toHaveLength(COUNT)
    ours.close()
    // etcd3's own policy, as the client had it before: the breaker opens for everyone.
    const theirs = small()
    for (let i = 0; i < 3; i++)
      await theirs
        .getAll()
        .prefix(keys.resources('w'))
        .strings()
        .catch(() => {})
    await expect(theirs.get(keys.resource('w', 'r01')).string()).rejects.toMatchObject({ isBrokenCircuitError: true })
    theirs.close()
  })
})
