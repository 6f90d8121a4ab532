import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DeliverPolicy } from '@nats-io/jetstream'
import { defineDriver, runDriver, type DriverHandle } from 'conveyor'
import { startLocalServers, type LocalServers } from '../runtime/servers/local-cluster.ts'
import { connectServers, type Connections } from '../runtime/connections.ts'
import { keys, streams, subjects } from '../runtime/keys.ts'
import { api, eventually } from './harness.ts'
import { ConveyorProcess } from './processes.ts'
import { startWorker, type ActorWorker } from '../actors/worker/worker.ts'
import { createLogger } from '../runtime/logger.ts'

let servers: LocalServers
let connections: Connections
let dir: string
let driver: DriverHandle
let worker: ActorWorker
const delivered: string[] = []

beforeAll(async () => {
  servers = await startLocalServers()
  connections = await connectServers(servers)
  worker = await startWorker({ connections, leaseTtlSeconds: 2, logger: createLogger('worker', 'error') })
  dir = await mkdtemp(join(tmpdir(), 'conveyor-crash-'))
})
afterAll(async () => {
  await driver?.close()
  await worker?.close()
  await connections?.close()
  await servers?.stop()
  await rm(dir, { recursive: true, force: true })
})

async function gateway(fault?: string): Promise<{ process: ConveyorProcess; url: string }> {
  const process = new ConveyorProcess(['gateway', '--port', '0'], {
    ...servers.env,
    CONVEYOR_DATA_DIR: join(dir, `gw-${Math.random().toString(36).slice(2)}`),
    CONVEYOR_LOG_LEVEL: 'error',
    CONVEYOR_AUTH: 'off',
    ...(fault ? { CONVEYOR_TEST_FAULT: fault } : {}),
  })
  const [, url] = await process.waitFor(/listening on (http:\/\/\S+)/)
  return { process, url: url! }
}

async function storedEvents(type: string, name: string): Promise<number> {
  const consumer = await connections.js.consumers.get(streams.events, {
    filter_subjects: subjects.history(type, name),
    deliver_policy: DeliverPolicy.All,
  })
  const info = await consumer.info()
  await consumer.delete().catch(() => {})
  return info.num_pending
}

describe('a crash between the etcd commit and the JetStream publish', () => {
  it('loses no event: after restart it is delivered exactly once', async () => {
    driver = await runDriver(
      defineDriver({
        name: 'watcher',
        resources: ['app'],
        reconcile: (ctx) => void delivered.push(`${ctx.resource.name}@${ctx.event.revision}`),
      }),
      { natsUrl: servers.natsUrl, natsAuth: servers.natsAuth },
    )
    const healthy = await gateway()
    expect(
      (
        await api(healthy.url, 'POST', '/resource-definitions', {
          name: 'app',
          version: '1',
          schema: { type: 'object' },
        })
      ).status,
    ).toBe(201)
    healthy.process.kill('SIGTERM')
    await healthy.process.exited

    // The writing process dies (SIGKILL) right after etcd committed, before anything was published.
    const crashing = await gateway('crash-after-commit')
    const attempt = await fetch(`${crashing.url}/resources`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'survivor', resource: 'app', spec: {} }),
    }).catch((error: unknown) => error)
    expect(attempt).toBeInstanceOf(Error)
    expect((await crashing.process.exited).signal).toBe('SIGKILL')

    const stored = await connections.etcd.get(keys.resource('app', 'survivor')).exec()
    expect(stored.kvs).toHaveLength(1)
    const revision = Number(stored.kvs[0]!.mod_revision)
    expect(await connections.etcd.getAll().prefix(keys.outboxes()).count()).toBe(1)
    expect(await storedEvents('app', 'survivor')).toBe(0)
    expect(delivered).toEqual([])

    // A restarted gateway recovers the event from the outbox.
    const restarted = await gateway()
    await eventually(() => (delivered.length > 0 ? true : undefined), 'the recovered event to reach the driver')
    expect(delivered).toEqual([`survivor@${revision}`])
    await eventually(
      async () => ((await connections.etcd.getAll().prefix(keys.outboxes()).count()) === 0 ? true : undefined),
      'the outbox to be emptied',
    )

    // Another restart republishes nothing; a later event arrives after anything that could have been duplicated.
    restarted.process.kill('SIGKILL')
    await restarted.process.exited
    const again = await gateway()
    try {
      expect((await api(again.url, 'POST', '/resources', { name: 'marker', resource: 'app', spec: {} })).status).toBe(
        201,
      )
      await eventually(() => (delivered.some((d) => d.startsWith('marker@')) ? true : undefined), 'the marker event')
      expect(delivered.filter((d) => d.startsWith('survivor@'))).toEqual([`survivor@${revision}`])
      // created, the driver's claim (pending → running), its result, then every driver done (→ succeeded)
      expect(await storedEvents('app', 'survivor')).toBe(4)
    } finally {
      again.process.kill('SIGTERM')
      await again.process.exited
    }
  })

  it('a republish of an already-published event is dropped by JetStream (message id from uid and revision)', async () => {
    const event = {
      kind: 'created',
      uid: 'u-1',
      revision: 42,
      time: new Date().toISOString(),
      type: 'app',
      name: 'dedup',
    }
    const first = await connections.js.publish(subjects.resource('app', 'dedup', 'created'), JSON.stringify(event), {
      msgID: 'u-1:42',
    })
    const second = await connections.js.publish(subjects.resource('app', 'dedup', 'created'), JSON.stringify(event), {
      msgID: 'u-1:42',
    })
    expect(first.duplicate).toBe(false)
    expect(second.duplicate).toBe(true)
    expect(second.seq).toBe(first.seq)
  })
})
