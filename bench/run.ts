import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawn } from 'node:child_process'
import { startLocalServers } from '../runtime/servers/local-cluster.ts'
import { connectServers } from '../runtime/connections.ts'
import { createToDriverLatency, httpCreates, rawEtcdCreates, rawJetStreamPublishes, round } from './creates.ts'

/**
 * `npm run bench`: every figure beside its raw baseline measured in the same run, on the same
 * servers. The gateway runs as its own process (`conveyor gateway`), as in production.
 */
const seconds = Number(process.env.BENCH_SECONDS ?? 8)
const servers = await startLocalServers()
const connections = await connectServers(servers)
const gatewayDir = await mkdtemp(join(tmpdir(), 'conveyor-bench-gw-'))
const cli = fileURLToPath(new URL('../cli/bin.js', import.meta.url))
const gateway = spawn(process.execPath, [cli, 'gateway', '--port', '0'], {
  env: { ...process.env, CONVEYOR_NATS_URL: servers.natsUrl, CONVEYOR_ETCD_ENDPOINTS: servers.etcdEndpoints.join(','), CONVEYOR_DATA_DIR: gatewayDir, CONVEYOR_LOG_LEVEL: 'error' },
  stdio: ['ignore', 'pipe', 'inherit'],
})
const url = await new Promise<string>((resolve, reject) => {
  let out = ''
  gateway.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString()
    const match = /listening on (http:\/\/\S+)/.exec(out)
    if (match) resolve(match[1]!)
  })
  gateway.once('exit', (code) => reject(new Error(`gateway exited with ${code}`)))
})

try {
  await fetch(`${url}/resource-definitions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench', version: '1', schema: { type: 'object', required: ['repository'], properties: { repository: { type: 'string' }, branch: { type: 'string' } } } }),
  })
  await fetch(`${url}/resource-definitions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'latency', version: '1', schema: { type: 'object' } }) })
  const log = (line: string): void => void process.stderr.write(line + '\n')

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
  const latency = await createToDriverLatency(url, 'latency', connections, 200, seconds * 1000)

  const rate = (r: { perSecond: number; p50Ms: number; p99Ms: number }) => ({ perSecond: round(r.perSecond), p50Ms: round(r.p50Ms, 2), p99Ms: round(r.p99Ms, 2) })
  const results = {
    when: new Date().toISOString(),
    seconds,
    creates: {
      concurrency1: { http: rate(http1), rawEtcdCreateTxn: rate(etcd1), rawJetStreamPublish: rate(js1), httpVsRawEtcd: round(http1.perSecond / etcd1.perSecond, 2) },
      concurrency64: { http: rate(http64), rawEtcdCreateTxn: rate(etcd64), rawJetStreamPublish: rate(js64), httpVsRawEtcd: round(http64.perSecond / etcd64.perSecond, 2), httpErrors: http64.errors + http64.non2xx },
    },
    createToDriver: { ratePerSecond: 200, sent: latency.sent, received: latency.received, p50Ms: round(latency.p50Ms, 2), p99Ms: round(latency.p99Ms, 2), maxMs: round(latency.maxMs, 2) },
    targets: {
      http64AtLeast80PercentOfRawEtcd: http64.perSecond >= 0.8 * etcd64.perSecond,
      createToDriverP99AtMost50Ms: latency.p99Ms <= 50 && latency.received === latency.sent,
    },
  }
  const table = [
    ['measure', 'ops/s', 'p50 ms', 'p99 ms'],
    ['HTTP create, 1 client', round(http1.perSecond), round(http1.p50Ms, 2), round(http1.p99Ms, 2)],
    ['raw etcd create txn, 1', round(etcd1.perSecond), round(etcd1.p50Ms, 2), round(etcd1.p99Ms, 2)],
    ['raw JetStream publish, 1', round(js1.perSecond), round(js1.p50Ms, 2), round(js1.p99Ms, 2)],
    ['HTTP create, 64 clients', round(http64.perSecond), round(http64.p50Ms, 2), round(http64.p99Ms, 2)],
    ['raw etcd create txn, 64', round(etcd64.perSecond), round(etcd64.p50Ms, 2), round(etcd64.p99Ms, 2)],
    ['raw JetStream publish, 64', round(js64.perSecond), round(js64.p50Ms, 2), round(js64.p99Ms, 2)],
    ['create → driver @200/s', `${latency.received}/${latency.sent}`, round(latency.p50Ms, 2), round(latency.p99Ms, 2)],
  ]
  for (const row of table) log(row.map((cell, i) => String(cell).padEnd(i === 0 ? 28 : 12)).join(''))
  log(`HTTP/raw-etcd at 64: ${results.creates.concurrency64.httpVsRawEtcd} (target ≥ 0.8); create→driver p99 ${results.createToDriver.p99Ms} ms (target ≤ 50)`)
  const outDir = fileURLToPath(new URL('./results/', import.meta.url))
  await mkdir(outDir, { recursive: true })
  await writeFile(join(outDir, 'latest.json'), JSON.stringify(results, null, 2))
  process.stdout.write(JSON.stringify(results, null, 2) + '\n')
} finally {
  gateway.kill('SIGTERM')
  await new Promise((resolve) => gateway.once('exit', resolve))
  await connections.close()
  await servers.stop()
  await rm(gatewayDir, { recursive: true, force: true })
}
