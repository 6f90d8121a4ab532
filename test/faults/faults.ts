import { setTimeout as delay } from 'node:timers/promises'
import type { Role, Topology } from './topology.ts'

/** One fault injected, as the report lists it. */
export interface InjectedFault {
  readonly fault: string
  readonly at: string
  readonly seconds: number
}

/** A fault the scenario injects, then waits for the system to recover from. */
export interface Fault {
  readonly name: string
  inject(topology: Topology): Promise<void>
}

/** SIGSTOP for `ms`, then SIGCONT: the process hangs with its sockets open, as a stalled disk or VM does. */
async function pause(pid: number | undefined, ms: number): Promise<void> {
  if (pid === undefined) throw new Error('no process to pause')
  process.kill(pid, 'SIGSTOP')
  try {
    await delay(ms)
  } finally {
    process.kill(pid, 'SIGCONT')
  }
}

export const pauseEtcd = (seconds: number, member = 0): Fault => ({
  name: `pause etcd${member === 0 ? '' : ` member ${member}`} ${seconds} s`,
  inject: (topology) => pause(topology.etcdMembers[member]!.child.pid, seconds * 1000),
})

export const pauseNats = (seconds: number, node = 0): Fault => ({
  name: `pause nats-server${node === 0 ? '' : ` node ${node}`} ${seconds} s`,
  inject: (topology) => pause(topology.natsNodes[node]!.child.pid, seconds * 1000),
})

/** kill -9 of a Conveyor process, started again after `downSeconds`. */
export const killRole = (pick: (topology: Topology) => Role, label: string, downSeconds = 3): Fault => ({
  name: `kill -9 ${label}`,
  inject: async (topology) => {
    const role = pick(topology)
    await role.kill()
    await delay(downSeconds * 1000)
    await role.start()
  },
})

/** kill -9 of one cluster node, brought back after `downSeconds` with its data. */
export const killNatsNode = (node: number, downSeconds = 10): Fault => ({
  name: `kill -9 nats node ${node}, back after ${downSeconds} s`,
  inject: async (topology) => {
    const running = topology.natsNodes[node]!
    await running.child.kill()
    await delay(downSeconds * 1000)
    await running.restart()
  },
})

export const killEtcdMember = (member: number, downSeconds = 10): Fault => ({
  name: `kill -9 etcd member ${member}, back after ${downSeconds} s`,
  inject: async (topology) => {
    const running = topology.etcdMembers[member]!
    await running.child.kill()
    await delay(downSeconds * 1000)
    await running.restart()
  },
})

/** kill -9 of each Conveyor role in turn: a gateway, a worker, a shell driver, a step recorder. */
export const killEachRole = (): Fault[] => [
  killRole((t) => t.gateways[0]!, 'gateway-1'),
  killRole((t) => t.workers[0]!, 'worker-1'),
  killRole((t) => t.drivers[0]!, 'shell-1'),
  killRole((t) => t.drivers[2]!, 'frec-1'),
]
