import type { Connections } from '../runtime/connections.ts'
import type { LocalServers } from '../runtime/servers/local-cluster.ts'
import { createToDriverLatency, httpCreates, rawEtcdCreates, rawJetStreamPublishes } from './creates.ts'
import { round } from './stats.ts'
import { apiHeaders, serverEnv, startGatewayProcess, startWorkerProcess } from './processes.ts'
import { waitForPartitions } from './actors.ts'

const log = (line: string): void => void process.stderr.write(line + '\n')

/** HTTP creates at 1 and 64 clients beside raw etcd create transactions and raw JetStream publishes; create → driver latency at 200/s. */
export async function createBenchmarks(servers: LocalServers, connections: Connections, seconds: number) {
  const gateway = await startGatewayProcess(servers, connections)
  const url = gateway.url
  let worker: Awaited<ReturnType<typeof startWorkerProcess>> | undefined
  try {
    const define = (body: unknown) =>
      fetch(`${url}/resource-definitions`, {
        method: 'POST',
        headers: apiHeaders,
        body: JSON.stringify(body),
      })
    await define({
      name: 'bench',
      version: '1',
      schema: {
        type: 'object',
        required: ['repository'],
        properties: { repository: { type: 'string' }, branch: { type: 'string' } },
      },
    })
    await define({ name: 'latency', version: '1', schema: { type: 'object' } })

    log('warming up…')
    await httpCreates(url, 'bench', 16, 2)
    log('raw etcd create txn…')
    const etcd1 = await rawEtcdCreates(connections, 1, seconds * 1000)
    const etcd64 = await rawEtcdCreates(connections, 64, seconds * 1000)
    log('raw JetStream publish…')
    const js1 = await rawJetStreamPublishes(connections, 1, seconds * 1000)
    const js64 = await rawJetStreamPublishes(connections, 64, seconds * 1000)
    log('HTTP creates…')
    const http1 = await httpCreates(url, 'bench', 1, seconds)
    const http64 = await httpCreates(url, 'bench', 64, seconds)
    log('create → driver latency at 200/s…')
    // Drivers claim each version from its actor: a worker hosts them (started only now, so that
    // the figures above measure the gateway alone, as before).
    worker = await startWorkerProcess({ ...serverEnv(servers), CONVEYOR_DATA_DIR: '/tmp/conveyor-bench-unused' })
    await waitForPartitions(connections, 1)
    await createToDriverLatency(url, 'latency', connections, 200, 1000)
    const latency = await createToDriverLatency(url, 'latency', connections, 200, seconds * 1000)

    const rate = (r: { perSecond: number; p50Ms: number; p99Ms: number }) => ({
      perSecond: round(r.perSecond),
      p50Ms: round(r.p50Ms, 2),
      p99Ms: round(r.p99Ms, 2),
    })
    return {
      concurrency1: {
        http: rate(http1),
        rawEtcdCreateTxn: rate(etcd1),
        rawJetStreamPublish: rate(js1),
        httpVsRawEtcd: round(http1.perSecond / etcd1.perSecond, 2),
      },
      concurrency64: {
        http: rate(http64),
        rawEtcdCreateTxn: rate(etcd64),
        rawJetStreamPublish: rate(js64),
        httpVsRawEtcd: round(http64.perSecond / etcd64.perSecond, 2),
        httpErrors: http64.errors + http64.non2xx,
      },
      createToDriver: {
        ratePerSecond: 200,
        sent: latency.sent,
        received: latency.received,
        p50Ms: round(latency.p50Ms, 2),
        p99Ms: round(latency.p99Ms, 2),
        maxMs: round(latency.maxMs, 2),
      },
      targets: {
        http64AtLeast80PercentOfRawEtcd: http64.perSecond >= 0.8 * etcd64.perSecond,
        createToDriverP99AtMost50Ms: latency.p99Ms <= 50 && latency.received === latency.sent,
      },
    }
  } finally {
    await worker?.stop()
    await gateway.stop()
  }
}
