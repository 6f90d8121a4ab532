import { readFile } from 'node:fs/promises'
import { expect, it } from 'vitest'
import { connectServers } from '../../runtime/connections.ts'
import { buckets, streams } from '../../runtime/keys.ts'
import { api, eventually } from '../harness.ts'
import { ConveyorProcess } from '../processes.ts'

/**
 * `conveyor cluster` on free ports: three NATS nodes and three etcd members, streams and buckets
 * with 3 replicas, two gateways, two workers and two shell drivers; a pipeline runs through either
 * gateway; Ctrl-C stops everything.
 */
it('conveyor cluster starts a 3 + 3 cluster and two of every role, and stops on Ctrl-C', async () => {
  const cluster = new ConveyorProcess(['cluster', '--nats-port', '0', '--port', '0'], {
    CONVEYOR_LOG_LEVEL: 'warn',
    // Its gateways are reached without tokens here; auth itself is tested with conveyor up.
    CONVEYOR_AUTH: 'off',
  })
  try {
    const [, natsUrl] = await cluster.waitFor(/CONVEYOR_NATS_URL=(\S+)/, 120_000)
    const [, etcdEndpoints] = await cluster.waitFor(/CONVEYOR_ETCD_ENDPOINTS=(\S+)/)
    const [, credentialsFile] = await cluster.waitFor(/credentials \(.*\): (\S+)/)
    const credentials = JSON.parse(await readFile(credentialsFile!, 'utf8')) as {
      nats: { user: string; password: string }
      etcd: { username: string; password: string }
    }
    expect(natsUrl!.split(',')).toHaveLength(3)
    expect(etcdEndpoints!.split(',')).toHaveLength(3)
    await cluster.waitFor(/streams and buckets ready \(3 replicas\)/)
    const gateways = await eventually(
      () => {
        const urls = [...cluster.output.matchAll(/\[gateway-\d\] Conveyor gateway listening on (\S+)/g)].map(
          (m) => m[1]!,
        )
        return urls.length === 2 ? urls : undefined
      },
      'both gateways',
      120_000,
    )
    await eventually(
      () =>
        (cluster.output.match(/\[worker-\d\] Conveyor worker \S+ running/g) ?? []).length === 2 ? true : undefined,
      'both workers',
      180_000,
    )
    expect(cluster.output.match(/\[shell-\d\] Conveyor driver shell running/g)).toHaveLength(2)

    await expect(
      connectServers({ natsUrl: natsUrl!, etcdEndpoints: etcdEndpoints!.split(','), natsAuth: {}, etcdAuth: {} }),
    ).rejects.toThrow(/refused/)
    const connections = await connectServers({
      natsUrl: natsUrl!,
      etcdEndpoints: etcdEndpoints!.split(','),
      natsAuth: credentials.nats,
      etcdAuth: credentials.etcd,
    })
    try {
      for (const name of [streams.events, streams.inbox, streams.logs, `KV_${buckets.drivers}`])
        expect((await connections.jsm.streams.info(name)).config.num_replicas, name).toBe(3)
      const members = await connections.etcd.cluster.memberList({})
      expect(members.members.map((m) => m.name).sort()).toEqual(['etcd0', 'etcd1', 'etcd2'])
    } finally {
      await connections.close()
    }

    const [one, two] = gateways as [string, string]
    expect(
      (await api(one, 'POST', '/resource-definitions', { name: 'build', version: '1', schema: { type: 'object' } }))
        .status,
    ).toBe(201)
    expect(
      (
        await api(two, 'POST', '/pipelines', {
          name: 'ci',
          resource: 'build',
          steps: [
            { id: 'a', driver: 'shell', commands: ['echo one'] },
            { id: 'b', driver: 'shell', needs: ['a'], commands: ['echo two'] },
          ],
        })
      ).status,
    ).toBe(201)
    expect(
      (await api(two, 'POST', '/resources', { name: 'x', resource: 'build', pipeline: 'ci', spec: {} })).status,
    ).toBe(201)
    await eventually(
      async () =>
        (await api(one, 'GET', '/resources/build/x')).body.status?.pipeline?.status === 'succeeded' ? true : undefined,
      'the run to succeed',
      60_000,
    )
  } finally {
    cluster.kill('SIGINT')
  }
  const { code } = await cluster.exited
  expect(code).toBe(0)
})
