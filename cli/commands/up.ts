import { join } from 'node:path'
import { ADMIN_TOKEN_FILE, CREDENTIALS_FILE, resolveConfig } from '../../runtime/config.ts'
import { TokenStore } from '../../runtime/token-store.ts'
import { ensureLocalAdminToken } from '../local-token.ts'
import { connectServers } from '../../runtime/connections.ts'
import { followDriverIdentities, startLocalServers } from '../../runtime/servers/local-cluster.ts'
import { createLogger } from '../../runtime/logger.ts'
import { startGateway } from '../../gateway/server.ts'
import { loadUws } from '../../gateway/uws.ts'
import { runDriver } from '../../actors/driver/run.ts'
import { startWorker } from '../../actors/worker/worker.ts'
import { untilSignal } from '../signals.ts'
import { BUILT_IN_DRIVERS } from './builtin-drivers.ts'
import type { ServeFlags } from './flags.ts'
import { ensurePortsFree, type NeededPort } from '../../runtime/servers/port-check.ts'

function localPorts(flags: ServeFlags): { nats: number; natsMonitor: number; etcd: number; etcdPeer: number } {
  const port = (value: string | undefined, fallback: number, flag: string): number => {
    if (value === undefined) return fallback
    const n = Number(value)
    if (!Number.isInteger(n) || n < 0 || n > 65535)
      throw new TypeError(`--${flag} must be a TCP port (0-65535), got ${JSON.stringify(value)}`)
    return n
  }
  const nats = port(flags.natsPort, 4222, 'nats-port')
  const etcd = port(flags.etcdPort, 2379, 'etcd-port')
  // The monitor sits beside the client port (4222 → 8222), so instances on other ports never share one.
  const natsMonitor = nats === 0 || nats + MONITOR_OFFSET > 65535 ? 0 : nats + MONITOR_OFFSET
  return { nats, natsMonitor, etcd, etcdPeer: etcd === 0 || etcd === 65535 ? 0 : etcd + 1 }
}

/** The NATS monitor port is the client port plus this. */
const MONITOR_OFFSET = 4000

/** Every port `up` binds, checked before anything starts. */
function neededPorts(
  config: { httpPort: number; httpHost: string },
  local: ReturnType<typeof localPorts> | undefined,
): NeededPort[] {
  const http: NeededPort = { port: config.httpPort, host: config.httpHost, what: 'HTTP API', flag: '--port' }
  if (!local) return [http]
  return [
    http,
    { port: local.nats, what: 'NATS client', flag: '--nats-port' },
    { port: local.natsMonitor, what: 'NATS monitor, the NATS port + 4000', flag: '--nats-port' },
    { port: local.etcd, what: 'etcd client', flag: '--etcd-port' },
    { port: local.etcdPeer, what: 'etcd peer, the etcd port + 1', flag: '--etcd-port' },
  ]
}

/** `conveyor up`: local etcd and NATS (unless given), then every role in this process. */
export async function up(flags: ServeFlags): Promise<number> {
  const useLocal = flags.natsUrl === undefined && flags.etcdEndpoints === undefined
  const config = resolveConfig(flags)
  await loadUws()
  const out = (line: string): boolean => process.stdout.write(line + '\n')
  const ports = useLocal ? localPorts(flags) : undefined
  // Taken ports are refused up front: a server that cannot bind its port must not leave this
  // instance talking to another instance's server on it.
  await ensurePortsFree(neededPorts(config, ports))
  const servers = ports ? await startLocalServers({ dataDir: config.dataDir, ports }) : undefined
  try {
    const connections = await connectServers(servers ?? config, { name: 'conveyor up' })
    const identities = servers
      ? await followDriverIdentities(servers, connections.etcd, createLogger('nats users'))
      : undefined
    const gateway = await startGateway({
      connections,
      port: config.httpPort,
      host: config.httpHost,
      allowedOrigins: config.allowedOrigins,
      auth: config.auth,
      dataDir: join(config.dataDir, 'gateway'),
    })
    const actorWorker = await startWorker({ connections, heapSoftLimitMb: 256 })
    const builtIns = await Promise.all(
      Object.values(BUILT_IN_DRIVERS).map((d) =>
        runDriver(d, { connections, workspaceRoot: join(config.dataDir, 'workspaces') }),
      ),
    )
    const tokenFile = join(config.dataDir, ADMIN_TOKEN_FILE)
    const admin = config.auth ? await ensureLocalAdminToken(new TokenStore(connections.etcd), tokenFile) : undefined
    out(`Conveyor is up.`)
    out(`  API:  ${gateway.url}`)
    if (admin)
      out(
        `  auth: admin token ${admin.created ? 'written to' : 'in'} ${tokenFile} (mode 0600); the CLI uses it here; for curl: export CONVEYOR_TOKEN=$(cat ${tokenFile}), then -H "Authorization: Bearer $CONVEYOR_TOKEN"`,
      )
    else out(`  auth: off (--no-auth; loopback only)`)
    out(`  NATS: ${servers?.natsUrl ?? config.natsUrl}`)
    out(`  etcd: ${(servers?.etcdEndpoints ?? config.etcdEndpoints).join(',')}`)
    if (servers)
      out(
        `  NATS and etcd require the credentials in ${join(servers.dataDir, CREDENTIALS_FILE)} (mode 0600); conveyor processes with this data directory use them`,
      )
    out(`  data: ${config.dataDir}`)
    out(`  drivers: ${Object.keys(BUILT_IN_DRIVERS).join(', ')} (built in)`)
    out(`Press Ctrl-C to stop.`)
    return await untilSignal(
      async () => {
        for (const handle of builtIns) await handle.close()
        await actorWorker.close()
        await gateway.close()
        await identities?.close()
        await connections.close()
        await servers?.stop()
      },
      (fatal) => {
        if (!servers) return
        servers.nats.child.onUnexpectedExit = (code, output) =>
          fatal(`nats-server exited (code ${code}): ${output.trim().split('\n').at(-1) ?? ''}`)
        servers.etcd.child.onUnexpectedExit = (code, output) =>
          fatal(`etcd exited (code ${code}): ${output.trim().split('\n').at(-1) ?? ''}`)
      },
    )
  } catch (error) {
    await servers?.stop()
    throw error
  }
}
