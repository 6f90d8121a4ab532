import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startLocalServers } from '../runtime/servers/local-cluster.ts'
import { connectServers } from '../runtime/connections.ts'
import { createBenchmarks } from './run-creates.ts'
import { actorBenchmarks } from './run-actors.ts'
import { pipelineBenchmarks } from './run-pipelines.ts'
import { historyBenchmarks } from './run-history.ts'

/**
 * `npm run bench [-- creates actors pipelines history]`: every figure beside its raw baseline measured in the same
 * run, on the same fresh servers. Prints a table to stderr and JSON to stdout (and to
 * bench/results/latest.json).
 */
const seconds = Number(process.env.BENCH_SECONDS ?? 8)
const sections = new Set(
  process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['creates', 'actors', 'pipelines', 'history'],
)
const log = (line: string): void => void process.stderr.write(line + '\n')

const results: Record<string, unknown> = { when: new Date().toISOString(), seconds }
const rows: (string | number)[][] = [['measure', 'result', 'baseline (same run)', 'ratio / target']]
for (const section of sections) {
  const servers = await startLocalServers()
  const connections = await connectServers(servers)
  try {
    if (section === 'creates') {
      const r = await createBenchmarks(servers, connections, seconds)
      results.creates = r
      rows.push(
        [
          'HTTP create, 1 client',
          `${r.concurrency1.http.perSecond}/s p50 ${r.concurrency1.http.p50Ms} p99 ${r.concurrency1.http.p99Ms} ms`,
          `etcd txn ${r.concurrency1.rawEtcdCreateTxn.perSecond}/s, JS ${r.concurrency1.rawJetStreamPublish.perSecond}/s`,
          `${r.concurrency1.httpVsRawEtcd}`,
        ],
        [
          'HTTP create, 64 clients',
          `${r.concurrency64.http.perSecond}/s p50 ${r.concurrency64.http.p50Ms} p99 ${r.concurrency64.http.p99Ms} ms`,
          `etcd txn ${r.concurrency64.rawEtcdCreateTxn.perSecond}/s, JS ${r.concurrency64.rawJetStreamPublish.perSecond}/s`,
          `${r.concurrency64.httpVsRawEtcd} (≥ 0.8)`,
        ],
        [
          'create → driver @200/s',
          `p50 ${r.createToDriver.p50Ms} p99 ${r.createToDriver.p99Ms} ms (${r.createToDriver.received}/${r.createToDriver.sent})`,
          '',
          'p99 ≤ 50 ms',
        ],
      )
    } else if (section === 'actors') {
      const r = await actorBenchmarks(servers, connections, seconds)
      results.actors = r
      rows.push(
        [
          'hot actor, 1 / 2 workers',
          `${r.transitionsPerSecond.workers1!.hotActor} / ${r.transitionsPerSecond.workers2!.hotActor} transitions/s`,
          `sequential CAS ${r.rawEtcdCas.sequential}/s`,
          `${r.ratios.hotActorVsSequentialCas.workers1} / ${r.ratios.hotActorVsSequentialCas.workers2} (≥ 3)`,
        ],
        [
          '1,000 actors, 1 / 2 workers',
          `${r.transitionsPerSecond.workers1!.thousandActors} / ${r.transitionsPerSecond.workers2!.thousandActors} transitions/s`,
          `64 concurrent CAS ${r.rawEtcdCas.concurrent64Over1000Keys}/s`,
          `${r.ratios.thousandActorsVsConcurrentCas.workers1} / ${r.ratios.thousandActorsVsConcurrentCas.workers2} (≥ 0.8)`,
        ],
        [
          'worker, 100,000 actors',
          `peak RSS ${r.memory.peakRssMb} MB`,
          `${r.memory.touchedPerSecond} first events/s`,
          '< 300 MB',
        ],
      )
    } else if (section === 'pipelines') {
      const r = await pipelineBenchmarks(servers, connections, seconds)
      results.pipelines = r
      const d = r.at50RunsPerSecond.stepDispatch
      rows.push(
        [
          '3-step pipeline, step dispatch @50 runs/s',
          `p50 ${d.p50Ms} p99 ${d.p99Ms} ms (${r.at50RunsPerSecond.finished}/${r.at50RunsPerSecond.runs} runs)`,
          `JetStream publish→consume p50 ${r.rawJetStreamRoundTrip150PerSecond.p50Ms} p99 ${r.rawJetStreamRoundTrip150PerSecond.p99Ms} ms`,
          'p99 ≤ 50 ms',
        ],
        [
          '  floor of a dispatch (same run)',
          `p50 ${r.stepDispatchFloor.p50Ms} ms`,
          `${r.stepDispatchFloor.hops}; etcd txn p50 ${r.rawEtcdTxn150PerSecond.p50Ms} p99 ${r.rawEtcdTxn150PerSecond.p99Ms} ms`,
          `dispatch p50 ${r.stepDispatchFloor.p50VsFloor}× floor (≤ 3)`,
        ],
        [
          '3-step pipeline, flat out',
          `${r.flatOut.runsPerSecond} runs/s (${r.flatOut.stepsPerSecond} steps/s)`,
          '',
          '',
        ],
      )
    } else if (section === 'history') {
      const r = await historyBenchmarks(servers, connections, seconds)
      results.history = r
      const w = r.watchFanOut
      rows.push(
        [
          'history read (GET …/history, pages of 1000)',
          `${r.history.httpPerSecond} events/s`,
          `JetStream ordered read ${r.history.rawJetStreamPerSecond} events/s`,
          `${r.history.ratio}`,
        ],
        [
          'watch fan-out, 100 watchers @500 changes/s',
          `${w.deliveredPerSecond} deliveries/s, p50 ${w.p50Ms} p99 ${w.p99Ms} ms (${w.delivered}/${w.expected})`,
          `etcd watch p50 ${w.rawEtcdWatch.p50Ms} p99 ${w.rawEtcdWatch.p99Ms} ms`,
          'p99 ≤ 50 ms',
        ],
      )
    } else throw new Error(`unknown benchmark section ${section}: use creates, actors, pipelines or history`)
  } finally {
    await connections.close()
    await servers.stop()
  }
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => String(row[i]).length)))
for (const row of rows) log(row.map((cell, i) => String(cell).padEnd(widths[i]! + 2)).join(''))
const outDir = fileURLToPath(new URL('./results/', import.meta.url))
await mkdir(outDir, { recursive: true })
await writeFile(join(outDir, 'latest.json'), JSON.stringify(results, null, 2))
process.stdout.write(JSON.stringify(results, null, 2) + '\n')
