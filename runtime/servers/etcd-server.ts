import { mkdir, chmod } from 'node:fs/promises'
import { SupervisedChild, httpOk } from './child.ts'
import { freePort } from './ports.ts'

export interface EtcdServerOptions {
  /** Client port; `0` picks a free one. @default 2379 */
  readonly port?: number
  /** Peer port; `0` picks a free one. @default 2380 */
  readonly peerPort?: number
  readonly dataDir: string
  /** History etcd keeps before compacting it (time travel and watch resumes reach back this far). @default 7 days */
  readonly compactionRetentionMs?: number
  /** Extra flags. */
  readonly extraArgs?: readonly string[]
}

export interface RunningEtcd {
  readonly endpoint: string
  readonly port: number
  readonly child: SupervisedChild
  stop(): Promise<void>
}

/** etcd's periodic retention: whole hours as `168h`, else minutes, else seconds. */
function etcdDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0) return `${ms / 60_000}m`
  return `${Math.max(1, Math.round(ms / 1000))}s`
}

/** Starts a single-member `etcd` bound to 127.0.0.1 and waits until it reports healthy. */
export async function startEtcdServer(options: EtcdServerOptions): Promise<RunningEtcd> {
  const port = options.port === 0 ? await freePort() : (options.port ?? 2379)
  const peerPort = options.peerPort === 0 ? await freePort() : (options.peerPort ?? 2380)
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 })
  await chmod(options.dataDir, 0o700)
  const client = `http://127.0.0.1:${port}`
  const peer = `http://127.0.0.1:${peerPort}`
  const child = await SupervisedChild.start({
    name: 'etcd',
    command: 'etcd',
    args: [
      '--name',
      'conveyor',
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
      `conveyor=${peer}`,
      '--logger=zap',
      '--log-level=warn',
      '--auto-compaction-mode=periodic',
      `--auto-compaction-retention=${etcdDuration(options.compactionRetentionMs ?? 7 * 24 * 3600 * 1000)}`,
      ...(options.extraArgs ?? []),
    ],
    debianPackage: 'etcd-server',
    ready: () => httpOk(`${client}/health`, (body) => body.includes('"health":"true"')),
    readyTimeoutMs: 20_000,
  })
  return { endpoint: client, port, child, stop: () => child.stop() }
}
