import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '../../runtime/servers/ports.ts'
import {
  startLocalServers,
  startLocalCluster,
  type LocalCluster,
  type LocalServers,
} from '../../runtime/servers/local-cluster.ts'
import type { RunningEtcd } from '../../runtime/servers/etcd-server.ts'
import type { RunningNats } from '../../runtime/servers/nats-server.ts'
import { ConveyorProcess } from '../processes.ts'

const STEP_RECORDER = fileURLToPath(new URL('./step-recorder.ts', import.meta.url))

/** One Conveyor process of the topology, which can be killed and started again as it was. */
export class Role {
  readonly name: string
  readonly #args: readonly string[]
  readonly #env: Record<string, string>
  readonly #ready: RegExp
  #process: ConveyorProcess | undefined
  /** Output of every process this role ran, the current one last. */
  readonly outputs: (() => string)[] = []

  constructor(name: string, args: readonly string[], env: Record<string, string>, ready: RegExp) {
    this.name = name
    this.#args = args
    this.#env = env
    this.#ready = ready
  }

  get pid(): number | undefined {
    return this.#process?.child.pid
  }

  async start(timeoutMs = 120_000): Promise<void> {
    const process = new ConveyorProcess(this.#args, this.#env)
    this.#process = process
    this.outputs.push(() => process.output)
    await process.waitFor(this.#ready, timeoutMs)
  }

  /** kill -9, and wait until it is gone. */
  async kill(): Promise<void> {
    const process = this.#process
    if (!process) return
    process.kill('SIGKILL')
    await process.exited
  }

  async stop(): Promise<void> {
    const process = this.#process
    if (!process) return
    process.kill('SIGTERM')
    const timer = setTimeout(() => process.kill('SIGKILL'), 10_000)
    await process.exited
    clearTimeout(timer)
  }

  output(): string {
    return this.outputs.map((output, i) => `--- ${this.name} process ${i + 1}\n${output()}`).join('\n')
  }
}

/** The servers (one of each, or a cluster) and, against them, two of every Conveyor role. */
export interface Topology {
  readonly servers: LocalServers
  readonly natsNodes: readonly RunningNats[]
  readonly etcdMembers: readonly RunningEtcd[]
  readonly env: Record<string, string>
  readonly gateways: readonly Role[]
  readonly workers: readonly Role[]
  /** Two shell drivers, then two step recorders. */
  readonly drivers: readonly Role[]
  readonly roles: readonly Role[]
  /** Gateways' base URLs. */
  readonly urls: readonly string[]
  /** The file every execution of a recorder step is written to. */
  readonly recordFile: string
  readonly dir: string
  /** Writes every process's output to a new directory kept after close, and answers it. */
  saveOutputs(): Promise<string>
  close(): Promise<void>
}

/**
 * Starts the servers (`cluster`: 3 NATS nodes and 3 etcd members), then two gateways, two
 * workers, two shell drivers and two step recorders as separate `conveyor` processes.
 */
export async function startTopology(options: { cluster: boolean; env?: Record<string, string> }): Promise<Topology> {
  const dir = await mkdtemp(join(tmpdir(), 'conveyor-faults-'))
  const servers: LocalServers = options.cluster ? await startLocalCluster() : await startLocalServers()
  const natsNodes: readonly RunningNats[] =
    'natsNodes' in servers ? (servers as LocalCluster).natsNodes : [servers.nats]
  const etcdMembers: readonly RunningEtcd[] =
    'etcdMembers' in servers ? (servers as LocalCluster).etcdMembers : [servers.etcd]
  const recordFile = join(dir, 'steps.txt')
  await writeFile(recordFile, '')
  const env: Record<string, string> = {
    // The servers' URLs and the control plane's NATS and etcd credentials.
    ...servers.env,
    CONVEYOR_LOG_LEVEL: 'warn',
    // The fault suites measure loss, not access: their gateways run without tokens (on loopback).
    CONVEYOR_AUTH: 'off',
    ...options.env,
  }
  const roleDir = async (name: string): Promise<string> => {
    const path = join(dir, name)
    await mkdir(path, { recursive: true })
    return path
  }
  const gateways: Role[] = []
  const workers: Role[] = []
  const drivers: Role[] = []
  const urls: string[] = []
  for (const n of [1, 2]) {
    const port = await freePort()
    urls.push(`http://127.0.0.1:${port}`)
    gateways.push(
      new Role(
        `gateway-${n}`,
        ['gateway'],
        { ...env, CONVEYOR_HTTP_PORT: String(port), CONVEYOR_DATA_DIR: await roleDir(`gateway-${n}`) },
        /gateway listening on/,
      ),
    )
    workers.push(new Role(`worker-${n}`, ['worker'], env, /worker \S+ running/))
    drivers.push(
      new Role(
        `shell-${n}`,
        ['driver', 'shell'],
        { ...env, CONVEYOR_DATA_DIR: await roleDir(`shell-${n}`) },
        /driver shell running/,
      ),
    )
  }
  for (const n of [1, 2])
    drivers.push(
      new Role(
        `frec-${n}`,
        ['driver', STEP_RECORDER],
        {
          ...env,
          RECORD_FILE: recordFile,
          DRIVER_INSTANCE: `frec-${n}`,
          CONVEYOR_DATA_DIR: await roleDir(`frec-${n}`),
        },
        /driver frec running/,
      ),
    )
  const roles = [...gateways, ...workers, ...drivers]
  // One at a time: the first creates the streams and buckets (replicated raft groups in a cluster).
  for (const role of roles) await role.start()
  const saveOutputs = async (): Promise<string> => {
    // Outside `dir`: kept after close for whoever reads the report.
    const logs = await mkdtemp(join(tmpdir(), 'conveyor-faults-logs-'))
    for (const role of roles) await writeFile(join(logs, `${role.name}.log`), role.output())
    for (const [i, node] of natsNodes.entries()) await writeFile(join(logs, `nats-${i}.log`), node.child.output)
    for (const [i, member] of etcdMembers.entries()) await writeFile(join(logs, `etcd-${i}.log`), member.child.output)
    return logs
  }
  return {
    servers,
    natsNodes,
    etcdMembers,
    env,
    gateways,
    workers,
    drivers,
    roles,
    urls,
    recordFile,
    dir,
    saveOutputs,
    close: async () => {
      await Promise.all(roles.map((role) => role.stop()))
      await servers.stop()
      if (!process.env.FAULTS_KEEP) await rm(dir, { recursive: true, force: true })
    },
  }
}
