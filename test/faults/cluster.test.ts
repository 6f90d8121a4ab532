import { it } from 'vitest'
import { killEachRole, killEtcdMember, killNatsNode, pauseEtcd, pauseNats } from './faults.ts'
import { expectInvariants } from './assertions.ts'
import { runScenario, SHORT } from './scenario.ts'

/**
 * A 3-node NATS JetStream cluster (streams with 3 replicas) and a 3-member etcd cluster; two of
 * every Conveyor role. Under continuous load: kill -9 of one NATS node and of one etcd member,
 * each brought back with its data (full: also a 10 s pause of the node and member the clients
 * know first, and kill -9 of each role).
 */
it('a cluster that loses a node: nothing lost, nothing doubled, nothing stuck', async () => {
  const result = await runScenario({
    suite: 'cluster',
    cluster: true,
    faults: [
      killNatsNode(1),
      killEtcdMember(1),
      ...(SHORT ? [] : [killNatsNode(0), killEtcdMember(0), pauseNats(10, 2), pauseEtcd(10, 2), ...killEachRole()]),
    ],
  })
  expectInvariants(result)
})
