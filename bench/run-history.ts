import type { Connections } from '../runtime/connections.ts'
import type { LocalServers } from '../runtime/servers/local-cluster.ts'
import { readHistoryOverHttp, readHistoryRaw, seedHistory, watchFanOut } from './history.ts'
import { startGatewayProcess } from './processes.ts'
import { round } from './stats.ts'

const log = (line: string): void => void process.stderr.write(line + '\n')
const HISTORY_EVENTS = 20_000

/** History read rate beside a raw JetStream read; watch fan-out to 100 watchers at 500 changes/s beside a raw etcd watch. */
export async function historyBenchmarks(servers: LocalServers, connections: Connections, seconds: number) {
  const gateway = await startGatewayProcess(servers)
  try {
    log(`seeding ${HISTORY_EVENTS} history events…`)
    await seedHistory(connections, 'bench-history', 'busy', HISTORY_EVENTS)
    log('reading history…')
    await readHistoryOverHttp(gateway.url, 'bench-history', 'busy')
    const http = await readHistoryOverHttp(gateway.url, 'bench-history', 'busy')
    const raw = await readHistoryRaw(connections, 'bench-history', 'busy', HISTORY_EVENTS)
    log('watch fan-out: 100 watchers, 500 changes/s…')
    const fan = await watchFanOut(gateway.url, connections, 'bench-fan', 100, 500, seconds * 1000)
    return {
      history: {
        events: http.events,
        httpPerSecond: round(http.perSecond),
        rawJetStreamPerSecond: round(raw.perSecond),
        ratio: round(http.perSecond / raw.perSecond, 2),
      },
      watchFanOut: {
        watchers: fan.watchers,
        changesPerSecond: 500,
        delivered: fan.delivered,
        expected: fan.expected,
        deliveredPerSecond: round(fan.deliveredPerSecond),
        p50Ms: round(fan.p50Ms, 2),
        p99Ms: round(fan.p99Ms, 2),
        maxMs: round(fan.maxMs, 2),
        rawEtcdWatch: { p50Ms: round(fan.rawEtcdWatch.p50Ms, 2), p99Ms: round(fan.rawEtcdWatch.p99Ms, 2) },
      },
      targets: {
        watchP99AtMost50MsAt500ChangesPerSecondTo100Watchers: fan.p99Ms <= 50 && fan.delivered === fan.expected,
      },
    }
  } finally {
    await gateway.stop()
  }
}
