import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { ConveyorError } from '../errors.ts'
import { freePort } from './ports.ts'
import { startEtcdServer, type RunningEtcd } from './etcd-server.ts'
import { startNatsServer, type NatsUser, type RunningNats } from './nats-server.ts'
import { etcdCompactionFromEnv, type EtcdAuth, type NatsAuth } from '../config.ts'
import { credentialsEnv, loadOrCreateCredentials, type LocalCredentials } from './credentials.ts'
import { requireEtcdAuth } from './etcd-auth.ts'
import { syncNatsUsers, type NatsUserSync } from './nats-user-sync.ts'
import type { Etcd3 } from 'etcd3'
import type { Logger } from '../logger.ts'

/** A local `nats-server -js` and `etcd`, supervised as children of this process; both require credentials. */
export interface LocalServers {
  readonly nats: RunningNats
  readonly etcd: RunningEtcd
  readonly natsUrl: string
  readonly etcdEndpoints: readonly string[]
  readonly dataDir: string
  /** The servers' credentials, kept in `dataDir/credentials.json` (mode 0600). */
  readonly credentials: LocalCredentials
  /** How the control plane signs in to NATS and etcd (what `connectServers` takes). */
  readonly natsAuth: NatsAuth
  readonly etcdAuth: EtcdAuth
  /** The environment that points a `conveyor` process at these servers, credentials included. */
  readonly env: Readonly<Record<string, string>>
  stop(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

export interface LocalServersOptions {
  /** Where the servers keep data; a fresh temp dir (removed on stop) when omitted. */
  readonly dataDir?: string
  /** Fixed ports (`conveyor up`); ephemeral ports when omitted. */
  readonly ports?: { nats: number; natsMonitor: number; etcd: number; etcdPeer: number }
  /** How much history the local etcd keeps. @default 7 days (env `CONVEYOR_ETCD_COMPACTION`) */
  readonly etcdCompactionRetentionMs?: number
}

/** Starts both servers in parallel; stops whichever started when the other fails. */
export async function startLocalServers(options: LocalServersOptions = {}): Promise<LocalServers> {
  const temporary = options.dataDir === undefined
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'conveyor-')))
  const ports = options.ports ?? { nats: 0, natsMonitor: 0, etcd: 0, etcdPeer: 0 }
  const credentials = await loadOrCreateCredentials(dataDir)
  const [nats, etcd] = await Promise.allSettled([
    startNatsServer({
      port: ports.nats,
      monitorPort: ports.natsMonitor,
      dataDir: join(dataDir, 'nats'),
      auth: { users: [controlPlaneUser(credentials)] },
    }),
    startEtcdServer({
      port: ports.etcd,
      peerPort: ports.etcdPeer,
      dataDir: join(dataDir, 'etcd'),
      compactionRetentionMs: options.etcdCompactionRetentionMs ?? etcdCompactionFromEnv(),
    }),
  ])
  // Both up: etcd gets its root user and auth (on the first start), or is checked to require them.
  const failure =
    nats.status === 'rejected'
      ? { reason: nats.reason as unknown }
      : etcd.status === 'rejected'
        ? { reason: etcd.reason as unknown }
        : await requireEtcdAuth([etcd.value.endpoint], credentials.etcd).then(
            () => undefined,
            (reason: unknown) => ({ reason }),
          )
  if (failure || nats.status === 'rejected' || etcd.status === 'rejected') {
    if (nats.status === 'fulfilled') await nats.value.stop()
    if (etcd.status === 'fulfilled') await etcd.value.stop()
    if (temporary) await rm(dataDir, { recursive: true, force: true })
    throw failure?.reason
  }
  const natsUrl = nats.value.url
  const etcdEndpoints = [etcd.value.endpoint]
  const natsAuth = { user: credentials.nats.user, password: credentials.nats.password }
  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.all([nats.value.stop(), etcd.value.stop()])
      if (temporary) await rm(dataDir, { recursive: true, force: true })
    })()
    return stopping
  }
  return {
    nats: nats.value,
    etcd: etcd.value,
    natsUrl,
    etcdEndpoints,
    dataDir,
    credentials,
    natsAuth,
    etcdAuth: credentials.etcd,
    env: serversEnv(natsUrl, etcdEndpoints, credentials),
    stop,
    [Symbol.asyncDispose]: stop,
  }
}

/**
 * Keeps the local NATS servers' users in step with the driver identities in etcd (every node of
 * a cluster), as long as the returned sync runs: what lets a gateway issue identities.
 */
export function followDriverIdentities(
  servers: LocalServers | LocalCluster,
  etcd: Etcd3,
  logger: Logger,
): Promise<NatsUserSync> {
  return syncNatsUsers({
    etcd,
    servers: 'natsNodes' in servers ? servers.natsNodes : [servers.nats],
    fixedUsers: [controlPlaneUser(servers.credentials)],
    logger,
  })
}

/** The control plane's NATS user: everything allowed (drivers get users with `permissions`, see `followDriverIdentities`). */
const controlPlaneUser = (credentials: LocalCredentials): NatsUser => ({
  user: credentials.nats.user,
  password: credentials.nats.password,
})

const serversEnv = (
  natsUrl: string,
  etcdEndpoints: readonly string[],
  credentials: LocalCredentials,
): Record<string, string> => ({
  CONVEYOR_NATS_URL: natsUrl,
  CONVEYOR_ETCD_ENDPOINTS: etcdEndpoints.join(','),
  ...credentialsEnv(credentials),
})

/** Three (or more) of each server on loopback: a NATS JetStream cluster and an etcd cluster. */
export interface LocalCluster extends LocalServers {
  readonly natsNodes: readonly RunningNats[]
  readonly etcdMembers: readonly RunningEtcd[]
}

/** Fixed ports of one node of each server. */
export interface ClusterNodePorts {
  readonly nats: number
  readonly natsRoute: number
  readonly natsMonitor: number
  readonly etcd: number
  readonly etcdPeer: number
}

export interface LocalClusterOptions {
  /** Where the servers keep data; a fresh temp dir (removed on stop) when omitted. */
  readonly dataDir?: string
  /** NATS nodes. @default 3 */
  readonly natsNodes?: number
  /** etcd members. @default 3 */
  readonly etcdMembers?: number
  /** Fixed ports per node (`conveyor cluster`); ephemeral ports when omitted. */
  readonly ports?: (node: number) => ClusterNodePorts
  /** How much history etcd keeps. @default 7 days (env `CONVEYOR_ETCD_COMPACTION`) */
  readonly etcdCompactionRetentionMs?: number
  /** How long the cluster may take to elect its leaders. @default 30 s */
  readonly readyTimeoutMs?: number
}

/** The ports `conveyor cluster` uses: NATS 4222+n (routes 6222+n, monitor 8222+n), etcd 2379/2380, 22379/22380, 32379/32380. */
export const defaultClusterPorts = (node: number): ClusterNodePorts => ({
  nats: 4222 + node,
  natsRoute: 6222 + node,
  natsMonitor: 8222 + node,
  etcd: node === 0 ? 2379 : node * 10_000 + 12_379,
  etcdPeer: node === 0 ? 2380 : node * 10_000 + 12_380,
})

/** Free ports for `nodes` nodes, no two alike (the kernel may hand out a port it just gave). */
async function ephemeralPorts(nodes: number): Promise<ClusterNodePorts[]> {
  const taken = new Set<number>()
  const next = async (): Promise<number> => {
    for (;;) {
      const port = await freePort()
      if (taken.has(port)) continue
      taken.add(port)
      return port
    }
  }
  const ports: ClusterNodePorts[] = []
  for (let node = 0; node < nodes; node++)
    ports.push({
      nats: await next(),
      natsRoute: await next(),
      natsMonitor: await next(),
      etcd: await next(),
      etcdPeer: await next(),
    })
  return ports
}

const portTaken = (error: unknown): boolean => error instanceof Error && /address already in use/.test(error.message)

/** Resolves once every NATS node names the same JetStream meta leader. */
async function jetStreamLeaderElected(nodes: readonly RunningNats[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = ''
  while (Date.now() < deadline) {
    const leaders = await Promise.all(
      nodes.map(async (node) => {
        const response = await fetch(`http://127.0.0.1:${node.monitorPort}/jsz`, {
          signal: AbortSignal.timeout(1000),
        }).catch(() => undefined)
        const body = (await response?.json().catch(() => undefined)) as
          { meta_cluster?: { leader?: string; cluster_size?: number } } | undefined
        return body?.meta_cluster?.leader ?? ''
      }),
    )
    last = leaders.join(',')
    if (leaders[0] && leaders.every((leader) => leader === leaders[0])) return
    await delay(200)
  }
  throw new ConveyorError('server-start-failed', `the NATS cluster elected no JetStream leader in time (${last})`)
}

/**
 * Starts a NATS JetStream cluster and an etcd cluster on 127.0.0.1 (three nodes each unless told),
 * all nodes at once, and waits until both elected a leader. Clients get every endpoint
 * (`natsUrl` is a comma list), so any one node may go away.
 */
export async function startLocalCluster(options: LocalClusterOptions = {}): Promise<LocalCluster> {
  // Ephemeral ports are free when picked, not when bound: another process may take one meanwhile.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startClusterOnce(options)
    } catch (error) {
      if (options.ports || attempt === 3 || !portTaken(error)) throw error
    }
  }
}

async function startClusterOnce(options: LocalClusterOptions): Promise<LocalCluster> {
  const temporary = options.dataDir === undefined
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'conveyor-cluster-')))
  const natsCount = options.natsNodes ?? 3
  const etcdCount = options.etcdMembers ?? 3
  const nodes = Math.max(natsCount, etcdCount)
  const ports = options.ports
    ? Array.from({ length: nodes }, (_, node) => options.ports!(node))
    : await ephemeralPorts(nodes)
  const routes = ports.slice(0, natsCount).map((p) => `nats://127.0.0.1:${p.natsRoute}`)
  const initialCluster = ports
    .slice(0, etcdCount)
    .map((p, node) => `etcd${node}=http://127.0.0.1:${p.etcdPeer}`)
    .join(',')
  const compactionRetentionMs = options.etcdCompactionRetentionMs ?? etcdCompactionFromEnv()
  const credentials = await loadOrCreateCredentials(dataDir)
  const started = await Promise.allSettled([
    ...ports.slice(0, natsCount).map((p, node) =>
      startNatsServer({
        port: p.nats,
        monitorPort: p.natsMonitor,
        dataDir: join(dataDir, `nats${node}`),
        serverName: `nats${node}`,
        cluster: { name: 'conveyor', port: p.natsRoute, routes: routes.filter((_, other) => other !== node) },
        auth: { users: [controlPlaneUser(credentials)], routes: credentials.natsRoutes },
      }),
    ),
    ...ports.slice(0, etcdCount).map((p, node) =>
      startEtcdServer({
        port: p.etcd,
        peerPort: p.etcdPeer,
        dataDir: join(dataDir, `etcd${node}`),
        name: `etcd${node}`,
        initialCluster,
        initialClusterToken: 'conveyor',
        ...(compactionRetentionMs !== undefined ? { compactionRetentionMs } : {}),
      }),
    ),
  ])
  const stopAll = async (): Promise<void> => {
    await Promise.all(
      started.map((result) => (result.status === 'fulfilled' ? result.value.stop() : Promise.resolve())),
    )
    if (temporary) await rm(dataDir, { recursive: true, force: true })
  }
  const failed = started.find((result): result is PromiseRejectedResult => result.status === 'rejected')
  if (failed) {
    await stopAll()
    throw failed.reason
  }
  const natsNodes = started.slice(0, natsCount).map((r) => (r as PromiseFulfilledResult<RunningNats>).value)
  const etcdMembers = started.slice(natsCount).map((r) => (r as PromiseFulfilledResult<RunningEtcd>).value)
  const natsUrl = natsNodes.map((node) => node.url).join(',')
  const etcdEndpoints = etcdMembers.map((member) => member.endpoint)
  try {
    await Promise.all([
      jetStreamLeaderElected(natsNodes, options.readyTimeoutMs ?? 30_000),
      requireEtcdAuth(etcdEndpoints, credentials.etcd),
    ])
  } catch (error) {
    await stopAll()
    throw error
  }
  const natsAuth = { user: credentials.nats.user, password: credentials.nats.password }
  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => (stopping ??= stopAll())
  return {
    nats: natsNodes[0]!,
    etcd: etcdMembers[0]!,
    natsNodes,
    etcdMembers,
    natsUrl,
    etcdEndpoints,
    dataDir,
    credentials,
    natsAuth,
    etcdAuth: credentials.etcd,
    env: serversEnv(natsUrl, etcdEndpoints, credentials),
    stop,
    [Symbol.asyncDispose]: stop,
  }
}
