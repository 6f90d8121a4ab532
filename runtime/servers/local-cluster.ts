import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startEtcdServer, type RunningEtcd } from './etcd-server.ts'
import { startNatsServer, type RunningNats } from './nats-server.ts'
import { etcdCompactionFromEnv } from '../config.ts'

/** A local `nats-server -js` and `etcd`, supervised as children of this process. */
export interface LocalServers {
  readonly nats: RunningNats
  readonly etcd: RunningEtcd
  readonly natsUrl: string
  readonly etcdEndpoints: readonly string[]
  readonly dataDir: string
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
  const [nats, etcd] = await Promise.allSettled([
    startNatsServer({ port: ports.nats, monitorPort: ports.natsMonitor, dataDir: join(dataDir, 'nats') }),
    startEtcdServer({
      port: ports.etcd,
      peerPort: ports.etcdPeer,
      dataDir: join(dataDir, 'etcd'),
      compactionRetentionMs: options.etcdCompactionRetentionMs ?? etcdCompactionFromEnv(),
    }),
  ])
  if (nats.status === 'rejected' || etcd.status === 'rejected') {
    if (nats.status === 'fulfilled') await nats.value.stop()
    if (etcd.status === 'fulfilled') await etcd.value.stop()
    if (temporary) await rm(dataDir, { recursive: true, force: true })
    throw nats.status === 'rejected' ? nats.reason : (etcd as PromiseRejectedResult).reason
  }
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
    natsUrl: nats.value.url,
    etcdEndpoints: [etcd.value.endpoint],
    dataDir,
    stop,
    [Symbol.asyncDispose]: stop,
  }
}
