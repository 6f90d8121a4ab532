import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { gatewayWithLimits, WsClient } from './ws-client.ts'
import { WatchHub } from '../gateway/watch-hub.ts'
import { createLogger } from '../runtime/logger.ts'
import { keys } from '../runtime/keys.ts'
import { DEFAULT_STREAM_LIMITS, streamLimits } from '../runtime/config.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack()
  for (const name of ['capped', 'paged', 'kept'])
    expect(
      (await api(stack.url, 'POST', '/resource-definitions', { name, version: '1', schema: { type: 'object' } }))
        .status,
    ).toBe(201)
})
afterAll(async () => {
  await stack?.close()
})

const text = (bytes: number, fill: string): string => fill.repeat(bytes)

describe('caps on /ws', () => {
  it('a socket holds a bounded number of subscriptions; one more is refused naming the limit', async () => {
    const gateway = await gatewayWithLimits(stack.connections, { subscriptionsPerSocket: 3 })
    try {
      const client = new WsClient(gateway.url)
      for (const id of ['a', 'b', 'c']) await client.send({ op: 'watch', id, type: 'capped' })
      await eventually(() => (['a', 'b', 'c'].every((id) => client.listed(id)) ? true : undefined), 'three lists')
      await client.send({ op: 'watch', id: 'd', type: 'capped' })
      const refused = await eventually(() => client.of('d', 'error')[0], 'the refusal')
      expect(refused).toMatchObject({ code: 'limit', limit: 'subscriptionsPerSocket', max: 3 })
      expect(refused.message).toMatch(/at most 3 subscriptions/)
      expect(refused.message).toMatch(/CONVEYOR_WS_MAX_SUBSCRIPTIONS/)
      expect(client.of('d', 'list')).toEqual([])
      // One unsubscribed makes room again.
      await client.send({ op: 'unsubscribe', id: 'a' })
      await client.send({ op: 'watch', id: 'e', type: 'capped' })
      await eventually(() => client.listed('e'), 'the list once there is room')
      await client.close()
    } finally {
      await gateway.close()
    }
  })

  it('a client (remote address) holds a bounded number of sockets; one more is a 429 problem with Retry-After', async () => {
    const gateway = await gatewayWithLimits(stack.connections, { connectionsPerClient: 2 })
    try {
      const first = new WsClient(gateway.url)
      const second = new WsClient(gateway.url)
      await Promise.all([first.opened, second.opened])
      const third = new WsClient(gateway.url)
      await expect(third.opened).rejects.toThrow(/429/)
      await eventually(() => third.refused, 'the refusal body')
      expect(third.refused!.status).toBe(429)
      expect(third.refused!.headers['retry-after']).toMatch(/^\d+$/)
      expect(third.refused!.headers['content-type']).toContain('application/problem+json')
      const body = JSON.parse(third.refused!.body)
      expect(body).toMatchObject({ type: 'urn:conveyor:problem:too-many-connections', status: 429 })
      expect(body.detail).toMatch(/at most 2 open streams per client/)
      expect(body.detail).toMatch(/CONVEYOR_MAX_STREAMS_PER_CLIENT/)
      // A closed socket frees its place.
      await first.close()
      const again = await eventually(async () => {
        const client = new WsClient(gateway.url)
        return client.opened.then(
          () => client,
          () => undefined,
        )
      }, 'a socket once one closed')
      await again.close()
      await second.close()
    } finally {
      await gateway.close()
    }
  })

  it(
    'a socket whose peer stops answering pings is closed after the idle timeout; a live one stays',
    {
      timeout: 90_000,
    },
    async () => {
      const gateway = await gatewayWithLimits(stack.connections, { idleTimeoutSeconds: 8 })
      try {
        const deaf = new WsClient(gateway.url, { autoPong: false })
        const live = new WsClient(gateway.url)
        await Promise.all([deaf.opened, live.opened])
        await live.send({ op: 'watch', id: 'w', type: 'capped' })
        const started = Date.now()
        let closedAfter = 0
        void deaf.closed.then(() => (closedAfter = Date.now() - started))
        await eventually(() => (closedAfter > 0 ? true : undefined), 'the deaf socket to be closed', 60_000)
        expect(closedAfter).toBeGreaterThan(4_000)
        // The live socket has been idle as long and stays open: it answers the pings.
        expect(live.socket.readyState).toBe(live.socket.OPEN)
        await live.close()
      } finally {
        await gateway.close()
      }
    },
  )

  it('a watch’s initial list arrives page by page, each page bounded in bytes', { timeout: 60_000 }, async () => {
    for (let i = 0; i < 10; i++)
      expect(
        (
          await api(stack.url, 'POST', '/resources', {
            name: `p-${i}`,
            resource: 'paged',
            spec: { data: text(100_000, 'p') },
          })
        ).status,
      ).toBe(201)
    const gateway = await gatewayWithLimits(stack.connections, { listPageBytes: 256 * 1024 })
    try {
      const client = new WsClient(gateway.url)
      const sizes: number[] = []
      client.socket.on('message', (data: Buffer) => sizes.push(data.length))
      await client.send({ op: 'watch', id: 'w', type: 'paged' })
      const list = await eventually(() => client.listed('w'), 'every page of the list', 30_000)
      expect(list.pages).toBeGreaterThanOrEqual(4)
      expect(list.items.map((item) => item.name).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `p-${i}`).sort())
      const pages = client.of('w', 'list')
      expect(pages.slice(0, -1).every((page) => page.more === true)).toBe(true)
      expect(pages.every((page) => page.revision === list.revision)).toBe(true)
      // A page holds what fits in 256 KiB, or one item when that alone is bigger.
      for (const size of sizes) expect(size).toBeLessThan(256 * 1024 + 110_000)
      await api(stack.url, 'PUT', '/resources/paged/p-3', { name: 'p-3', resource: 'paged', spec: { data: 'small' } })
      const change = await eventually(() => client.changes('w')[0], 'the change after the list')
      expect(change.revision).toBeGreaterThan(list.revision)
      await client.close()
    } finally {
      await gateway.close()
    }
  })
})

describe('resume buffers', () => {
  it(
    'are bounded in bytes over all types; a resume from before them still gets every change',
    {
      timeout: 60_000,
    },
    async () => {
      const budget = 1024 * 1024
      const hub = new WatchHub(stack.connections.etcd, createLogger('hub', 'error'), { resumeBufferBytes: budget })
      try {
        const { header } = await stack.connections.etcd.kv.range({ key: Buffer.from('/conveyor/none') })
        const start = Number(header.revision)
        const live: number[] = []
        const watching = hub.subscribe('kept', start, { change: (c) => void live.push(c.revision), fail: () => {} })
        const revisions: number[] = []
        for (let i = 0; i < 20; i++) {
          const value = JSON.stringify({
            name: `k-${i}`,
            resource: 'kept',
            spec: { data: text(200_000, 'k') },
            metadata: { labels: {} },
            run: { runid: 'r' },
          })
          revisions.push(
            Number(
              (
                await stack.connections.etcd
                  .put(keys.resource('kept', `k-${i}`))
                  .value(value)
                  .exec()
              ).header.revision,
            ),
          )
        }
        await eventually(() => (live.length === 20 ? true : undefined), 'every change live')
        expect(hub.bufferedBytes).toBeLessThanOrEqual(budget)
        expect(hub.bufferedBytes).toBeGreaterThan(0)
        // The first changes left the buffer: a resume from there gets its own etcd watch, and misses nothing.
        const resumed: number[] = []
        const resuming = hub.subscribe('kept', start, { change: (c) => void resumed.push(c.revision), fail: () => {} })
        await eventually(() => (resumed.length === 20 ? true : undefined), 'every change after the resume')
        expect(resumed).toEqual(revisions)
        expect(hub.bufferedBytes).toBeLessThanOrEqual(budget)
        watching.stop()
        resuming.stop()
      } finally {
        hub.close()
      }
    },
  )
})

describe('stream limits', () => {
  it('come from the overrides, then the environment, then the defaults; a bad value names its variable', () => {
    expect(streamLimits({}, {})).toEqual(DEFAULT_STREAM_LIMITS)
    expect(
      streamLimits(
        { listPageBytes: 4096 },
        {
          CONVEYOR_WS_MAX_SUBSCRIPTIONS: '10',
          CONVEYOR_WATCH_RESUME_BYTES: '8MiB',
          CONVEYOR_WATCH_LIST_PAGE_BYTES: '2MiB',
          CONVEYOR_WS_IDLE_TIMEOUT: '2m',
        },
      ),
    ).toMatchObject({
      subscriptionsPerSocket: 10,
      resumeBufferBytes: 8 * 1024 * 1024,
      listPageBytes: 4096,
      idleTimeoutSeconds: 120,
    })
    expect(streamLimits({}, { CONVEYOR_WS_IDLE_TIMEOUT: '30' }).idleTimeoutSeconds).toBe(30)
    expect(() => streamLimits({}, { CONVEYOR_MAX_STREAMS_PER_CLIENT: '0' })).toThrow(/CONVEYOR_MAX_STREAMS_PER_CLIENT/)
    expect(() => streamLimits({}, { CONVEYOR_WS_MAX_QUEUED_BYTES: 'lots' })).toThrow(/CONVEYOR_WS_MAX_QUEUED_BYTES/)
    expect(() => streamLimits({}, { CONVEYOR_WS_IDLE_TIMEOUT: '5s' })).toThrow(
      /CONVEYOR_WS_IDLE_TIMEOUT must be 8 to 960/,
    )
    expect(() => streamLimits({ idleTimeoutSeconds: 3600 }, {})).toThrow(/8 to 960/)
  })
})
