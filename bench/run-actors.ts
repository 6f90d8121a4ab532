import type { Connections } from '../runtime/connections.ts'
import type { LocalServers } from '../runtime/servers/local-cluster.ts'
import { driveTransitions, rawCas, rssMb, seedActors, waitForPartitions } from './actors.ts'
import { serverEnv, startWorkerProcess } from './processes.ts'
import { round } from './stats.ts'

const log = (line: string): void => void process.stderr.write(line + '\n')

/** Actor transitions (one hot actor, 1,000 actors; 1 and 2 workers) beside raw etcd CAS, and worker memory with 100,000 actors. */
export async function actorBenchmarks(servers: LocalServers, connections: Connections, seconds: number) {
  const env = { ...serverEnv(servers), CONVEYOR_DATA_DIR: '/tmp/conveyor-bench-unused' }
  log('raw etcd CAS…')
  const casSequential = await rawCas(connections, 1, 1, seconds * 1000)
  const casConcurrent = await rawCas(connections, 64, 1000, seconds * 1000)
  log('seeding actors…')
  const many = Array.from({ length: 1000 }, (_, i) => `m-${i}`)
  await seedActors(connections, 'bench-actor', ['hot', ...many])

  const byWorkers: Record<string, { hotActor: number; thousandActors: number }> = {}
  for (const count of [1, 2]) {
    log(`${count} worker(s)…`)
    const workers = await Promise.all(Array.from({ length: count }, () => startWorkerProcess(env)))
    try {
      await waitForPartitions(connections, count)
      const hot = await driveTransitions(connections, 'bench-actor', ['hot'], 6000, 256)
      const spread = await driveTransitions(connections, 'bench-actor', many, 20_000, 256)
      byWorkers[`workers${count}`] = { hotActor: round(hot.perSecond), thousandActors: round(spread.perSecond) }
    } finally {
      await Promise.all(workers.map((w) => w.stop()))
    }
  }

  log('memory with 100,000 stored actors…')
  const hundredK = Array.from({ length: 100_000 }, (_, i) => `k-${i}`)
  await seedActors(connections, 'bench-memory', hundredK)
  const worker = await startWorkerProcess(env)
  let peak = 0
  const sampler = setInterval(() => void rssMb(worker.child.pid!).then((mb) => (peak = Math.max(peak, mb))), 250)
  let touched: { perSecond: number }
  try {
    await waitForPartitions(connections, 1)
    touched = await driveTransitions(connections, 'bench-memory', hundredK, hundredK.length, 512)
    peak = Math.max(peak, await rssMb(worker.child.pid!))
  } finally {
    clearInterval(sampler)
    await worker.stop()
  }

  const one = byWorkers.workers1!
  const two = byWorkers.workers2!
  return {
    rawEtcdCas: {
      sequential: round(casSequential.perSecond),
      concurrent64Over1000Keys: round(casConcurrent.perSecond),
    },
    transitionsPerSecond: byWorkers,
    ratios: {
      hotActorVsSequentialCas: {
        workers1: round(one.hotActor / casSequential.perSecond, 2),
        workers2: round(two.hotActor / casSequential.perSecond, 2),
      },
      thousandActorsVsConcurrentCas: {
        workers1: round(one.thousandActors / casConcurrent.perSecond, 2),
        workers2: round(two.thousandActors / casConcurrent.perSecond, 2),
      },
    },
    memory: { storedActors: hundredK.length, touchedPerSecond: round(touched.perSecond), peakRssMb: round(peak) },
    targets: {
      hotActorAtLeast3xSequentialCas: Math.max(one.hotActor, two.hotActor) >= 3 * casSequential.perSecond,
      thousandActorsAtLeast80PercentOfConcurrentCas:
        Math.max(one.thousandActors, two.thousandActors) >= 0.8 * casConcurrent.perSecond,
      workerUnder300MbWith100kActors: peak < 300,
    },
  }
}
