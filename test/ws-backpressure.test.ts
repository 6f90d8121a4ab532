import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { gatewayWithLimits, WsClient } from './ws-client.ts'
import { subjects } from '../runtime/keys.ts'
import { encodeLogLine } from '../runtime/log-lines.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack()
  for (const name of ['blob', 'slow', 'many'])
    expect(
      (await api(stack.url, 'POST', '/resource-definitions', { name, version: '1', schema: { type: 'object' } }))
        .status,
    ).toBe(201)
})
afterAll(async () => {
  await stack?.close()
})

const text = (bytes: number, fill: string): string => fill.repeat(bytes)

describe('WebSocket backpressure', () => {
  it('a watcher that received a 3.5 MB list gets every one of the next 20 changes', { timeout: 120_000 }, async () => {
    const names = Array.from({ length: 35 }, (_, i) => `big-${i}`)
    for (const name of names)
      expect(
        (
          await api(stack.url, 'POST', '/resources', {
            name,
            resource: 'blob',
            spec: { n: 0, data: text(100_000, 'a') },
          })
        ).status,
      ).toBe(201)
    // A fresh socket whose reader is busy (it does not read for a while): the 3.5 MB list and the
    // 20 changes of 100 KB after it (each one alone over uWS's 64 KiB default) must wait for it.
    const client = new WsClient(stack.url)
    await client.send({ op: 'watch', id: 'w', type: 'blob' })
    client.pause()
    const committed: number[] = []
    for (const [i, name] of names.slice(0, 20).entries()) {
      const reply = await api(stack.url, 'PUT', `/resources/blob/${name}`, {
        name,
        resource: 'blob',
        spec: { n: i + 1, data: text(100_000, 'b') },
      })
      expect(reply.status).toBe(200)
      committed.push(reply.body.metadata.revision as number)
    }
    client.resume()
    const list = await eventually(() => client.listed('w'), 'the whole 3.5 MB list', 60_000)
    expect(list.items).toHaveLength(35)
    // A change the list read already has is not sent again; every later one is.
    const expected = committed.filter((revision) => revision > list.revision)
    expect(expected.length).toBeGreaterThanOrEqual(10)
    await eventually(
      () => (client.changes('w').at(-1)?.revision === committed.at(-1) ? true : undefined),
      'the 20th change',
      60_000,
    ).catch(() => undefined)
    expect(client.changes('w').map((c) => c.revision)).toEqual(expected)
    await client.close()
  })

  it(
    'a watcher that never reads is closed with 1013 and the revision to resume from; resuming from it yields the rest with no gap',
    { timeout: 240_000 },
    async () => {
      // A small resume buffer, so a few MB of changes leave the reader behind it.
      const gateway = await gatewayWithLimits(stack.connections, { resumeBufferBytes: 2 * 1024 * 1024 })
      try {
        for (let i = 0; i < 5; i++)
          expect(
            (await api(stack.url, 'POST', '/resources', { name: `s-${i}`, resource: 'slow', spec: { n: -1 } })).status,
          ).toBe(201)
        const reader = new WsClient(gateway.url)
        await reader.send({ op: 'watch', id: 'w', type: 'slow' })
        const list = await eventually(() => reader.listed('w'), 'the empty list')
        expect(list.items).toHaveLength(5)
        reader.pause()

        const committed: number[] = []
        const tooSlow = (): boolean => gateway.warnings.some((w) => /too slow/.test(w.message))
        let after = -1
        for (let i = 0; i < 200 && (after < 0 || i < after + 10); i++) {
          const name = `s-${i % 5}`
          const reply = await api(stack.url, 'PUT', `/resources/slow/${name}`, {
            name,
            resource: 'slow',
            spec: { n: i, data: text(200_000, String(i % 10)) },
          })
          expect(reply.status).toBe(200)
          committed.push(reply.body.metadata.revision)
          if (after < 0 && tooSlow()) after = i
        }
        expect(after, 'the gateway gave up on the reader').toBeGreaterThanOrEqual(0)
        reader.resume()
        const closed = await reader.closed
        expect(closed.code).toBe(1013)
        const final = reader.of('w', 'error').at(-1)
        expect(final).toMatchObject({ code: 'too-slow', fromRevision: expect.any(Number) })
        const received = reader.changes('w').map((c) => c.revision as number)
        expect(final.fromRevision).toBe(received.at(-1) ?? list.revision)
        expect(closed.reason).toContain(String(final.fromRevision))
        expect(received.length).toBeLessThan(committed.length)

        const resumed = new WsClient(gateway.url)
        await resumed.send({ op: 'watch', id: 'w', type: 'slow', fromRevision: final.fromRevision })
        await eventually(
          () => (resumed.changes('w').at(-1)?.revision === committed.at(-1) ? true : undefined),
          'the last committed change after the resume',
          60_000,
        )
        expect([...received, ...resumed.changes('w').map((c) => c.revision as number)]).toEqual(committed)
        await resumed.close()
      } finally {
        await gateway.close()
      }
    },
  )

  it(
    'many watches on one socket past its queue limit: each is told where to resume, the socket closes with 1013, and resuming each misses nothing',
    { timeout: 240_000 },
    async () => {
      const gateway = await gatewayWithLimits(stack.connections, { socketQueueBytes: 256 * 1024 })
      try {
        for (let i = 0; i < 5; i++)
          expect(
            (await api(stack.url, 'POST', '/resources', { name: `s-${i}`, resource: 'many', spec: { n: -1 } })).status,
          ).toBe(201)
        const ids = Array.from({ length: 10 }, (_, i) => `w${i}`)
        const reader = new WsClient(gateway.url)
        for (const id of ids) await reader.send({ op: 'watch', id, type: 'many' })
        await eventually(() => (ids.every((id) => reader.listed(id)) ? true : undefined), 'ten lists')
        const listedAt = reader.listed('w0')!.revision
        reader.pause()
        const committed: number[] = []
        const tooSlow = (): boolean => gateway.warnings.some((w) => /too slow/.test(w.message))
        for (let i = 0; i < 100 && !tooSlow(); i++) {
          const reply = await api(stack.url, 'PUT', `/resources/many/s-${i % 5}`, {
            name: `s-${i % 5}`,
            resource: 'many',
            spec: { n: 1000 + i, data: text(200_000, 'q') },
          })
          expect(reply.status).toBe(200)
          committed.push(reply.body.metadata.revision)
        }
        expect(tooSlow(), 'the gateway gave up on the reader').toBe(true)
        for (let i = 0; i < 3; i++)
          committed.push(
            (
              await api(stack.url, 'PUT', `/resources/many/s-${i}`, {
                name: `s-${i}`,
                resource: 'many',
                spec: { n: 2000 + i },
              })
            ).body.metadata.revision,
          )
        reader.resume()
        const closed = await reader.closed
        expect(closed.code).toBe(1013)
        expect(closed.reason).toMatch(/resume each subscription/)
        const resumed = new WsClient(gateway.url)
        for (const id of ids) {
          const final = reader.of(id, 'error').at(-1)
          expect(final).toMatchObject({ code: 'too-slow', fromRevision: expect.any(Number) })
          expect(final.fromRevision).toBe(reader.changes(id).at(-1)?.revision ?? listedAt)
          await resumed.send({ op: 'watch', id, type: 'many', fromRevision: final.fromRevision })
        }
        await eventually(
          () => (ids.every((id) => resumed.changes(id).at(-1)?.revision === committed.at(-1)) ? true : undefined),
          'every watch to the last change',
          60_000,
        )
        for (const id of ids)
          expect([...reader.changes(id), ...resumed.changes(id)].map((c) => c.revision)).toEqual(committed)
        await resumed.close()
      } finally {
        await gateway.close()
      }
    },
  )

  it(
    'log lines wait for a reader that does not read: once it reads it gets every line, in order, none dropped',
    { timeout: 240_000 },
    async () => {
      const runid = 'flood-1'
      const publish = async (message: string): Promise<number> =>
        (await stack.connections.js.publish(subjects.log('flooder', runid), encodeLogLine({ message }))).seq
      // The run must be known before a subscription is accepted.
      const published = [await publish('first')]
      await stack.gateway.logs.waitFor(published[0]!, 30_000)
      const reader = new WsClient(stack.url)
      await reader.send({ op: 'logs', id: 'l', runid, driver: 'flooder' })
      await eventually(() => reader.of('l', 'log')[0], 'the first line')
      reader.pause()
      // About 30 MB while it does not read: far more than TCP holds for it.
      for (let round = 0; round < 25; round++)
        published.push(
          ...(await Promise.all(Array.from({ length: 20 }, (_, i) => publish(`${round}.${i} ${text(60_000, 'y')}`)))),
        )
      await stack.gateway.logs.waitFor(published.at(-1)!, 60_000)
      reader.resume()
      await eventually(
        () => (reader.of('l', 'log').at(-1)?.line.seq === published.at(-1) ? true : undefined),
        'the last line',
        60_000,
      ).catch(() => undefined)
      expect(reader.of('l', 'log').map((m) => m.line.seq as number)).toEqual(published)
      expect(reader.socket.readyState).toBe(reader.socket.OPEN)
      await reader.close()
    },
  )
})
