import type { Connections } from '../runtime/connections.ts'
import type { LocalServers } from '../runtime/servers/local-cluster.ts'
import { rawEtcdTxn, rawRoundTrip, runThroughput, StepClock, steadyRuns } from './pipelines.ts'
import { serverEnv, startGatewayProcess, startWorkerProcess } from './processes.ts'
import { waitForPartitions } from './actors.ts'
import { round } from './stats.ts'

const log = (line: string): void => void process.stderr.write(line + '\n')
const STEPS = ['noop-one', 'noop-two', 'noop-three']

/** A 3-step pipeline of no-op drivers: dispatch latency at 50 runs/s and runs/s flat out, beside a raw JetStream publish → consume round trip. */
export async function pipelineBenchmarks(servers: LocalServers, connections: Connections, seconds: number) {
  const gateway = await startGatewayProcess(servers)
  const worker = await startWorkerProcess({ ...serverEnv(servers), CONVEYOR_DATA_DIR: '/tmp/conveyor-bench-unused' })
  const clock = new StepClock()
  try {
    await waitForPartitions(connections, 1)
    const post = (path: string, body: unknown) =>
      fetch(`${gateway.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }).then((r) => r.arrayBuffer())
    await post('/resource-definitions', { name: 'bench-build', version: '1', schema: { type: 'object' } })
    await post('/pipelines', {
      name: 'bench-three',
      resource: 'bench-build',
      steps: STEPS.map((driver, i) => ({ id: `step-${i + 1}`, driver })),
    })
    await clock.start(connections, STEPS)
    log('warming up…')
    await steadyRuns(gateway.url, clock, 'bench-build', 'bench-three', 50, 1000)
    log('raw JetStream publish → consume at 150/s…')
    const raw = await rawRoundTrip(connections, 150, seconds * 1000)
    log('raw etcd transaction at 150/s…')
    const txn = await rawEtcdTxn(connections, 150, Math.min(4, seconds) * 1000)
    log('pipeline runs at 50/s…')
    const steady = await steadyRuns(gateway.url, clock, 'bench-build', 'bench-three', 50, seconds * 1000)
    log('pipeline runs flat out…')
    const flat = await runThroughput(gateway.url, clock, 'bench-build', 'bench-three', 1500, 32)
    const latency = (l: { p50Ms: number; p99Ms: number; maxMs: number; count: number }) => ({
      count: l.count,
      p50Ms: round(l.p50Ms, 2),
      p99Ms: round(l.p99Ms, 2),
      maxMs: round(l.maxMs, 2),
    })
    // What a dispatch cannot go below: the report crosses JetStream to the worker and is committed,
    // the dispatch crosses JetStream to the driver, whose claim crosses JetStream to the worker and
    // is committed (the answer's core NATS hop is left out).
    const floorP50 = 3 * raw.p50Ms + 2 * txn.p50Ms
    return {
      rawJetStreamRoundTrip150PerSecond: latency(raw),
      rawEtcdTxn150PerSecond: latency(txn),
      stepDispatchFloor: {
        p50Ms: round(floorP50, 2),
        hops: '3 × JetStream publish→consume + 2 × etcd txn (p50s)',
        p50VsFloor: round(steady.dispatch.p50Ms / floorP50, 2),
      },
      at50RunsPerSecond: { runs: steady.runs, finished: steady.finished, stepDispatch: latency(steady.dispatch) },
      flatOut: {
        runs: flat.runs,
        seconds: round(flat.seconds, 2),
        runsPerSecond: round(flat.perSecond),
        stepsPerSecond: round(flat.perSecond * STEPS.length),
      },
      targets: {
        stepDispatchP99AtMost50MsAt50RunsPerSecond: steady.dispatch.p99Ms <= 50 && steady.finished === steady.runs,
        stepDispatchP50Within3xFloor: steady.dispatch.p50Ms <= 3 * floorP50,
      },
    }
  } finally {
    await clock.stop()
    await worker.stop()
    await gateway.stop()
  }
}
