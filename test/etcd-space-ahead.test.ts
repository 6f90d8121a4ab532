import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Etcd3 } from 'etcd3'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startEtcdServer, type RunningEtcd } from '../runtime/servers/etcd-server.ts'
import { EtcdSpace } from '../runtime/etcd-space.ts'

const QUOTA = 16 * 1024 * 1024
let dir: string
let etcd: RunningEtcd
let client: Etcd3

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'conveyor-etcd-ahead-'))
  etcd = await startEtcdServer({ port: 0, peerPort: 0, dataDir: join(dir, 'etcd'), quotaBackendBytes: QUOTA })
  client = new Etcd3({ hosts: [etcd.endpoint] })
})
afterAll(async () => {
  client?.close()
  await etcd?.stop()
  await rm(dir, { recursive: true, force: true })
})

it('reclaims space once the database passes its share of the quota, before etcd refuses a write', async () => {
  // History alone (one key written again and again) grows the database file past half the quota.
  const value = 'x'.repeat(200_000)
  const size = async (): Promise<number> => Number((await client.maintenance.status()).dbSize)
  let written = 0
  while (written < 70 && (await size()) < 0.55 * QUOTA)
    for (let i = 0; i < 5; i++) await client.put('/conveyor/space-test').value(`${written++}:${value}`)
  const before = await size()
  expect(before).toBeGreaterThanOrEqual(0.5 * QUOTA)
  const space = new EtcdSpace([etcd.endpoint], { quotaBytes: QUOTA, reclaimAt: 0.5, keepHistoryMs: 0 })
  try {
    // Past half the quota: this check compacts and defragments; the next one sees the smaller file.
    await space.check()
    expect(space.status()?.lastReclaimAt).toBeDefined()
    await space.check()
    const after = space.status()!
    expect(after.dbSizeBytes).toBeLessThan(0.5 * QUOTA)
    expect(after.dbSizeBytes).toBeLessThan(before / 2)
    expect(after.alarms).toEqual([])
    expect((await client.get('/conveyor/space-test').string())?.startsWith(`${written - 1}:`)).toBe(true)
  } finally {
    await space.close()
  }
}, 60_000)
