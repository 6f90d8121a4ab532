import { chmod, mkdir, readdir, rm } from 'node:fs/promises'
import { httpOk, startRestartable, type ChildSpec, type SupervisedChild } from './child.ts'
import { freePort, withFreshPorts } from './ports.ts'
import { etcdLimitsFromEnv } from '../config.ts'

export interface EtcdServerOptions {
  /** Client port; `0` picks a free one. @default 2379 */
  readonly port?: number
  /** Peer port; `0` picks a free one. @default 2380 */
  readonly peerPort?: number
  readonly dataDir: string
  /** History etcd keeps before compacting it (time travel and watch resumes reach back this far). @default 24 hours */
  readonly compactionRetentionMs?: number
  /** `--quota-backend-bytes`. @default `CONVEYOR_ETCD_QUOTA`, else 2 GiB */
  readonly quotaBackendBytes?: number
  /** `--max-request-bytes`. @default `CONVEYOR_ETCD_MAX_REQUEST_BYTES`, else 1.5 MiB */
  readonly maxRequestBytes?: number
  /** Extra flags. */
  readonly extraArgs?: readonly string[]
  /** Member name (`--name`), unique in a cluster. @default 'conveyor' */
  readonly name?: string
  /** Every member as `name=peerUrl`, comma separated (`--initial-cluster`). @default this member alone */
  readonly initialCluster?: string
  /** `--initial-cluster-token`, the same on every member of one cluster. @default etcd's */
  readonly initialClusterToken?: string
}

export interface RunningEtcd {
  readonly endpoint: string
  readonly port: number
  readonly name: string
  /** The current process (a new one after `restart`). */
  readonly child: SupervisedChild
  stop(): Promise<void>
  /** Starts the member again on the same ports and data, after a kill or a stop. */
  restart(): Promise<void>
}

/** etcd's periodic retention: whole hours as `168h`, else minutes, else seconds. */
function etcdDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0) return `${ms / 60_000}m`
  return `${Math.max(1, Math.round(ms / 1000))}s`
}

/**
 * Starts an `etcd` member bound to 127.0.0.1 (alone, or one of `initialCluster`) and waits until it
 * reports healthy (for a cluster member: until a quorum elected a leader, so start members together).
 */
export async function startEtcdServer(options: EtcdServerOptions): Promise<RunningEtcd> {
  // A member that failed to bind may have begun its data: a new one (only) starts again from nothing.
  const fresh = (await readdir(options.dataDir).catch(() => [])).length === 0
  return await withFreshPorts(options.port === 0 || options.peerPort === 0, async () => {
    if (fresh) await rm(options.dataDir, { recursive: true, force: true })
    return await startEtcdServerOnce(options)
  })
}

async function startEtcdServerOnce(options: EtcdServerOptions): Promise<RunningEtcd> {
  const port = options.port === 0 ? await freePort() : (options.port ?? 2379)
  const peerPort = options.peerPort === 0 ? await freePort() : (options.peerPort ?? 2380)
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 })
  await chmod(options.dataDir, 0o700)
  const client = `http://127.0.0.1:${port}`
  const peer = `http://127.0.0.1:${peerPort}`
  const name = options.name ?? 'conveyor'
  const limits = etcdLimitsFromEnv()
  const spec: ChildSpec = {
    name: name === 'conveyor' ? 'etcd' : `etcd ${name}`,
    command: 'etcd',
    args: [
      '--name',
      name,
      '--data-dir',
      options.dataDir,
      '--listen-client-urls',
      client,
      '--advertise-client-urls',
      client,
      '--listen-peer-urls',
      peer,
      '--initial-advertise-peer-urls',
      peer,
      '--initial-cluster',
      options.initialCluster ?? `${name}=${peer}`,
      ...(options.initialClusterToken ? ['--initial-cluster-token', options.initialClusterToken] : []),
      '--logger=zap',
      '--log-level=warn',
      '--auto-compaction-mode=periodic',
      `--auto-compaction-retention=${etcdDuration(options.compactionRetentionMs ?? 24 * 3600 * 1000)}`,
      `--quota-backend-bytes=${Math.round(options.quotaBackendBytes ?? limits.quotaBytes)}`,
      `--max-request-bytes=${Math.round(options.maxRequestBytes ?? limits.maxRequestBytes)}`,
      ...(options.extraArgs ?? []),
    ],
    debianPackage: 'etcd-server',
    ready: () => httpOk(`${client}/health`, (body) => body.includes('"health":"true"')),
    readyTimeoutMs: 20_000,
  }
  const server = await startRestartable(spec)
  return {
    endpoint: client,
    port,
    name,
    get child() {
      return server.child
    },
    stop: server.stop,
    restart: server.restart,
  }
}
