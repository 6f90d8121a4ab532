import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { WatchHub } from '../gateway/watch-hub.ts'
import { createLogger } from '../runtime/logger.ts'
import { keys } from '../runtime/keys.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack()
  expect(
    (await api(stack.url, 'POST', '/resource-definitions', { name: 'svc', version: '1', schema: { type: 'object' } }))
      .status,
  ).toBe(201)
})
afterAll(async () => {
  await stack?.close()
})

/** A `/ws` client that keeps every message it receives. */
class WsClient {
  readonly messages: any[] = []
  readonly socket: WebSocket
  readonly opened: Promise<void>
  readonly closed: Promise<void>

  constructor(url: string) {
    this.socket = new WebSocket(`${url.replace('http://', 'ws://')}/ws`)
    this.socket.on('message', (data) => this.messages.push(JSON.parse(data.toString())))
    this.opened = new Promise((resolve, reject) => {
      this.socket.once('open', () => resolve())
      this.socket.once('error', reject)
    })
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()))
  }

  async send(request: unknown): Promise<void> {
    await this.opened
    this.socket.send(JSON.stringify(request))
  }

  async close(): Promise<void> {
    this.socket.close()
    await this.closed
  }

  changes(id: string): any[] {
    return this.messages.filter((m) => m.id === id && m.type === 'change')
  }
}

describe('watch over /ws', () => {
  it(
    '1,000 concurrent updates across 50 resources, the watcher disconnecting and resuming twice: it sees exactly the committed sequence',
    { timeout: 120_000 },
    async () => {
      const names = Array.from({ length: 50 }, (_, i) => `svc-${i}`)
      for (const name of names)
        expect(
          (
            await api(stack.url, 'POST', '/resources', {
              name,
              resource: 'svc',
              labels: { team: Number(name.slice(4)) % 2 === 0 ? 'even' : 'odd' },
              spec: { n: -1 },
            })
          ).status,
        ).toBe(201)

      let client = new WsClient(stack.url)
      await client.send({ op: 'watch', id: 'all', type: 'svc' })
      const list = await eventually(() => client.messages.find((m) => m.type === 'list'), 'the initial list')
      expect(list.items.map((item: any) => item.name).sort()).toEqual([...names].sort())
      const seen: any[] = []
      let last = list.revision as number

      const committed: { revision: number; name: string; n: number }[] = []
      let next = 0
      const updating = Promise.all(
        Array.from({ length: 32 }, async () => {
          for (let i = next++; i < 1000; i = next++) {
            const name = names[i % names.length]!
            const reply = await api(stack.url, 'PUT', `/resources/svc/${name}`, {
              name,
              resource: 'svc',
              spec: { n: i },
            })
            if (reply.status === 200) committed.push({ revision: reply.body.metadata.revision, name, n: i })
            else expect(reply.status).toBe(409)
          }
        }),
      )
      // Disconnect twice mid-stream; each time resume from the last revision received.
      for (const after of [150, 500]) {
        await eventually(
          () => (seen.length + client.changes('all').length >= after ? true : undefined),
          `${after} changes`,
          60_000,
        )
        await client.close()
        // A revision is whole at its change without `more`: what came after it is asked for again.
        const got = client.changes('all')
        const whole = got.findLastIndex((c) => !c.more)
        seen.push(...got.slice(0, whole + 1))
        if (whole >= 0) last = got[whole].revision
        client = new WsClient(stack.url)
        await client.send({ op: 'watch', id: 'all', type: 'svc', fromRevision: last })
      }
      await updating
      expect(committed.length).toBeGreaterThan(900)
      committed.sort((a, b) => a.revision - b.revision)
      await eventually(
        () => (seen.length + client.changes('all').length >= committed.length ? true : undefined),
        'every committed change',
        60_000,
      )
      seen.push(...client.changes('all'))
      await client.close()
      expect(seen.map((c) => c.revision)).toEqual(committed.map((c) => c.revision))
      expect(seen.map((c) => `${c.kind} ${c.object.name} ${c.object.spec.n}`)).toEqual(
        committed.map((c) => `updated ${c.name} ${c.n}`),
      )
    },
  )

  it('filters by label, reports deletes, answers a compacted revision and bad requests with clear errors', async () => {
    const client = new WsClient(stack.url)
    await client.send({ op: 'watch', id: 'even', type: 'svc', labelSelector: 'team=even' })
    const list = await eventually(
      () => client.messages.find((m) => m.id === 'even' && m.type === 'list'),
      'the filtered list',
    )
    expect(list.items).toHaveLength(25)
    await api(stack.url, 'DELETE', '/resources/svc/svc-1')
    await api(stack.url, 'DELETE', '/resources/svc/svc-2')
    const deleted = await eventually(
      () => client.changes('even').find((c) => c.kind === 'deleted'),
      'the delete of an even resource',
    )
    expect(deleted.object.name).toBe('svc-2')
    expect(client.changes('even').some((c) => c.object.name === 'svc-1')).toBe(false)

    await client.send({ op: 'watch', id: 'bad', type: 'Not A Type' })
    const bad = await eventually(() => client.messages.find((m) => m.id === 'bad'), 'the error for a bad type')
    expect(bad).toMatchObject({ type: 'error', code: 'invalid', errors: [{ path: '/type' }] })

    const { header } = await stack.connections.etcd.kv.range({ key: Buffer.from('/conveyor/none') })
    await stack.connections.etcd.kv.compact({ revision: header.revision, physical: true })
    await client.send({ op: 'watch', id: 'old', type: 'svc', fromRevision: 2 })
    const compacted = await eventually(() => client.messages.find((m) => m.id === 'old'), 'the compaction error')
    expect(compacted).toMatchObject({ type: 'error', code: 'compacted' })
    expect(compacted.message).toMatch(/watch again without fromRevision/)
    await client.close()
  })

  it("one transaction changing several resources: each change but the revision's last says more follows, so a resume from the last whole revision misses nothing", async () => {
    const stored = (name: string, team: string, n: number): string =>
      JSON.stringify({ name, resource: 'svc', spec: { n }, metadata: { labels: { team } }, run: { runid: 'r' } })
    const commit = async (n: number): Promise<number> => {
      const put = (name: string, team: string) => ({
        request_put: { key: Buffer.from(keys.resource('svc', name)), value: Buffer.from(stored(name, team, n)) },
      })
      const reply = await stack.connections.etcd.kv.txn({
        success: [put('txn-a', 'even'), put('txn-b', 'even'), put('txn-c', 'odd')],
      })
      return Number(reply.header.revision)
    }
    const first = await commit(1)
    const client = new WsClient(stack.url)
    await client.send({ op: 'watch', id: 'all', type: 'svc', fromRevision: first - 1 })
    await client.send({ op: 'watch', id: 'even', type: 'svc', fromRevision: first - 1, labelSelector: 'team=even' })
    const all = await eventually(
      () => (client.changes('all').length >= 3 ? client.changes('all') : undefined),
      'the transaction',
    )
    expect(all.map((c) => [c.revision, c.object.name, c.more])).toEqual([
      [first, 'txn-a', true],
      [first, 'txn-b', true],
      [first, 'txn-c', undefined],
    ])
    // The revision's last change is filtered out: the last one this watch gets ends the revision.
    const even = await eventually(
      () => (client.changes('even').length >= 2 ? client.changes('even') : undefined),
      'the even part',
    )
    expect(even.map((c) => [c.object.name, c.more])).toEqual([
      ['txn-a', true],
      ['txn-b', undefined],
    ])
    await client.close()
  })

  it('a subscriber that joins ahead of the shared etcd watch gets nothing it already has', async () => {
    const hub = new WatchHub(stack.connections.etcd, createLogger('hub', 'error'))
    try {
      const { header } = await stack.connections.etcd.kv.range({ key: Buffer.from('/conveyor/none') })
      const start = Number(header.revision)
      const early: number[] = []
      const late: number[] = []
      hub.subscribe('svc', start, { change: (c) => void early.push(c.revision), fail: () => {} })
      let last = start
      for (let i = 0; i < 20; i++)
        last = Number(
          (
            await stack.connections.etcd
              .put(keys.resource('svc', `ahead-${i}`))
              .value(
                JSON.stringify({
                  name: `ahead-${i}`,
                  resource: 'svc',
                  spec: {},
                  metadata: { labels: {} },
                  run: { runid: 'r' },
                }),
              )
              .exec()
          ).header.revision,
        )
      // As if it had listed at `last`, while the shared watch may still be behind.
      hub.subscribe('svc', last, { change: (c) => void late.push(c.revision), fail: () => {} })
      await stack.connections.etcd
        .put(keys.resource('svc', 'after'))
        .value(
          JSON.stringify({ name: 'after', resource: 'svc', spec: {}, metadata: { labels: {} }, run: { runid: 'r' } }),
        )
      await eventually(() => (early.length === 21 ? true : undefined), 'every change for the early subscriber')
      await eventually(() => (late.length === 1 ? true : undefined), 'the one later change')
      expect(late).toEqual([early.at(-1)])
    } finally {
      hub.close()
    }
  })
})
