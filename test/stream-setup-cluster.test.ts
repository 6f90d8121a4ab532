import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { connectNats } from '../runtime/nats-connection.ts'
import { startNatsServer, type RunningNats } from '../runtime/servers/nats-server.ts'
import { freePort } from '../runtime/servers/ports.ts'
import { streams } from '../runtime/keys.ts'

const nodes: RunningNats[] = []
let dir: string | undefined

afterAll(async () => {
  await Promise.all(nodes.map((node) => node.stop()))
  if (dir) await rm(dir, { recursive: true, force: true })
})

it('a process started before its NATS cluster has formed waits for it, then creates the replicated streams', async () => {
  dir = await mkdtemp(join(tmpdir(), 'conveyor-js-forming-'))
  const routes = await Promise.all([0, 1, 2].map(() => freePort()))
  const start = (i: number): Promise<RunningNats> =>
    startNatsServer({
      port: 0,
      monitorPort: 0,
      dataDir: join(dir!, `n${i}`),
      serverName: `n${i}`,
      cluster: {
        name: 'forming',
        port: routes[i]!,
        routes: routes.filter((_, j) => j !== i).map((port) => `nats://127.0.0.1:${port}`),
      },
    })
  const first = await start(0)
  nodes.push(first)
  // One node of three: JetStream is on, but there is no meta leader to create a stream yet.
  let settled = false
  const connecting = connectNats(first.url, { name: 'forming-test' }).finally(() => (settled = true))
  connecting.catch(() => undefined)
  nodes.push(await start(1), await start(2))
  const connections = await connecting
  try {
    expect(settled).toBe(true)
    expect(connections.streamReplicas).toBe(3)
    const info = await connections.jsm.streams.info(streams.events)
    expect(info.config.num_replicas).toBe(3)
  } finally {
    await connections.close()
  }
}, 120_000)
