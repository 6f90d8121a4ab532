import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { ADMIN_TOKEN_FILE, CREDENTIALS_FILE, resolveConfig } from '../../runtime/config.ts'
import { TokenStore } from '../../runtime/token-store.ts'
import { ensureLocalAdminToken } from '../local-token.ts'
import { connectServers } from '../../runtime/connections.ts'
import { DriverRegistry } from '../../runtime/driver-registry.ts'
import { createLogger } from '../../runtime/logger.ts'
import { replayBuckets } from '../../runtime/replays.ts'
import {
  defaultClusterPorts,
  followDriverIdentities,
  startLocalCluster,
  type LocalCluster,
} from '../../runtime/servers/local-cluster.ts'
import { untilSignal } from '../signals.ts'
import type { ServeFlags } from './flags.ts'

export interface ClusterFlags extends ServeFlags {
  /** Only the servers: no gateways, workers or drivers. */
  readonly serversOnly?: boolean | undefined
}

/** One Conveyor role run as a child `conveyor` process, its output prefixed with its name. */
interface Role {
  readonly name: string
  readonly child: ChildProcess
  readonly exited: Promise<void>
  /** Sends `signal` to it, as asked (its exit is not reported as a surprise). */
  stop(signal: NodeJS.Signals): void
}

const out = (line: string): boolean => process.stdout.write(line + '\n')

function startRole(name: string, args: readonly string[], env: Record<string, string>): Role {
  // process.argv[1] is the `conveyor` script running now (sources or dist alike).
  const child = spawn(process.execPath, [process.argv[1]!, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  for (const stream of [child.stdout!, child.stderr!])
    createInterface({ input: stream }).on('line', (line) => out(`[${name}] ${line}`))
  let stopping = false
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      if (!stopping) out(`[${name}] exited (${signal ?? `code ${code}`})`)
      resolve()
    }),
  )
  const stop = (signal: NodeJS.Signals): void => {
    stopping = true
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
  }
  return { name, child, exited, stop }
}

/** How long Ctrl-C may take: the roles' own grace, then the servers. */
const STOP_GRACE_MS = 20_000
/** How long a role may take to stop on SIGTERM before it gets SIGKILL. */
const ROLE_GRACE_MS = 8000

/** SIGTERM to every role, SIGKILL to those still running after their grace (within the command's). */
async function stopRoles(roles: readonly Role[]): Promise<void> {
  for (const role of roles) role.stop('SIGTERM')
  const timer = setTimeout(() => roles.forEach((role) => role.stop('SIGKILL')), ROLE_GRACE_MS)
  await Promise.all(roles.map((role) => role.exited))
  clearTimeout(timer)
}

/** Creates the streams and key-value buckets (each a replicated raft group), one at a time. */
async function prepareCluster(servers: LocalCluster, adminTokenFile: string | undefined): Promise<void> {
  const started = Date.now()
  const connections = await connectServers(servers, { name: 'conveyor cluster' })
  try {
    await replayBuckets(connections)
    ;(await DriverRegistry.open(connections, createLogger('cluster', 'error'))).close()
    if (adminTokenFile) {
      const admin = await ensureLocalAdminToken(new TokenStore(connections.etcd), adminTokenFile)
      out(
        `  admin token ${admin.created ? 'written to' : 'in'} ${adminTokenFile} (mode 0600); export CONVEYOR_TOKEN=$(cat ${adminTokenFile})`,
      )
    }
  } finally {
    await connections.close()
  }
  out(`  streams and buckets ready (${connections.streamReplicas} replicas) in ${Date.now() - started} ms`)
}

/**
 * `conveyor cluster`: a 3-node NATS JetStream cluster and a 3-member etcd cluster on loopback
 * (streams with 3 replicas), then two gateways, two workers and two instances of the built-in
 * `shell` driver against them, each its own process. Ctrl-C stops everything.
 */
export async function cluster(flags: ClusterFlags): Promise<number> {
  const config = resolveConfig(flags)
  const ephemeral = flags.natsPort === '0' || flags.etcdPort === '0'
  // Free ports differ on every start, and etcd remembers its peers' addresses: such a cluster lives
  // in a temporary directory; the fixed ports keep their data in the data directory.
  const servers = await startLocalCluster(
    ephemeral ? {} : { dataDir: join(config.dataDir, 'cluster'), ports: defaultClusterPorts },
  )
  const dataDir = servers.dataDir
  // URLs and the control plane's credentials, for the roles this command starts.
  const env = servers.env
  out('Conveyor cluster servers are up.')
  out(`  CONVEYOR_NATS_URL=${servers.natsUrl}`)
  out(`  CONVEYOR_ETCD_ENDPOINTS=${servers.etcdEndpoints.join(',')}`)
  out(
    `  credentials (NATS user ${servers.natsAuth.user}, etcd user ${servers.etcdAuth.username}): ${join(dataDir, CREDENTIALS_FILE)} (mode 0600)`,
  )
  out(`  data: ${dataDir}`)
  const roles: Role[] = []
  // Create the replicated streams and buckets once, before six processes race to.
  await prepareCluster(servers, config.auth ? join(config.dataDir, ADMIN_TOKEN_FILE) : undefined)
  // Driver identities the gateways issue reach every NATS node through this process.
  const control = await connectServers(servers, { name: 'conveyor cluster' })
  const identities = await followDriverIdentities(servers, control.etcd, createLogger('nats users'))
  if (!flags.serversOnly) {
    const port = config.httpPort
    for (const n of [1, 2]) {
      const roleDir = (role: string): string => join(dataDir, `${role}-${n}`)
      roles.push(
        startRole(`gateway-${n}`, ['gateway'], {
          ...env,
          CONVEYOR_HTTP_PORT: String(port === 0 ? 0 : port + n - 1),
          CONVEYOR_DATA_DIR: roleDir('gateway'),
        }),
        startRole(`worker-${n}`, ['worker'], { ...env, CONVEYOR_DATA_DIR: roleDir('worker') }),
        startRole(`shell-${n}`, ['driver', 'shell'], { ...env, CONVEYOR_DATA_DIR: roleDir('shell') }),
      )
    }
    out(`  API: http://${config.httpHost}:${port} and :${port + 1} (two gateways), two workers, two shell drivers`)
  }
  out('Press Ctrl-C to stop.')
  // Six processes, then six servers, stop one after the other: more than one process's grace.
  return await untilSignal(
    async () => {
      await stopRoles(roles)
      await identities.close()
      await control.close()
      await servers.stop()
    },
    undefined,
    STOP_GRACE_MS,
  )
}
