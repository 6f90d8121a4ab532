import { it } from 'vitest'
import { killEachRole, pauseEtcd, pauseNats } from './faults.ts'
import { expectInvariants } from './assertions.ts'
import { runScenario, SHORT } from './scenario.ts'

/**
 * One etcd and one nats-server; two gateways, two workers, two shell drivers and two step
 * recorders as processes. Under continuous load: etcd paused (SIGSTOP) 10 s and 70 s, then
 * nats-server the same, then kill -9 of each role in turn (short: 10 s pauses only).
 */
it('outages under load: nothing lost, nothing doubled, nothing stuck, the API answers 503 with Retry-After', async () => {
  const pauses = SHORT ? [10] : [10, 70]
  const result = await runScenario({
    suite: 'outage',
    cluster: false,
    faults: [...pauses.map((s) => pauseEtcd(s)), ...pauses.map((s) => pauseNats(s)), ...killEachRole()],
  })
  expectInvariants(result)
})
