import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startNatsServer } from '../runtime/servers/nats-server.ts'
import { newCredentials } from '../runtime/servers/credentials.ts'
import { requireEtcdAuth } from '../runtime/servers/etcd-auth.ts'
import { startEtcdServer, type EtcdServerOptions, type RunningEtcd } from '../runtime/servers/etcd-server.ts'
import { connectServers, type ConnectOptions, type Connections } from '../runtime/connections.ts'
import { startGateway, type Gateway } from '../gateway/server.ts'
import { startWorker, type ActorWorker } from '../actors/worker/worker.ts'
import { createLogger } from '../runtime/logger.ts'
import { PARTITIONS } from '../runtime/keys.ts'
import { eventually } from './harness.ts'

/** A stack whose servers and connections take storage settings (quota, stream limits) a test chooses. */
export interface StorageStack {
  readonly etcd: RunningEtcd
  readonly connections: Connections
  readonly gateway: Gateway
  readonly url: string
  /** Starts an actor worker (owning every partition) on the stack's connections. */
  startWorker(): Promise<ActorWorker>
  close(): Promise<void>
}

export async function startStorageStack(
  options: {
    readonly etcd?: Omit<EtcdServerOptions, 'dataDir' | 'port' | 'peerPort'>
    readonly connect?: ConnectOptions
    readonly eventReplyTimeoutMs?: number
  } = {},
): Promise<StorageStack> {
  const dir = await mkdtemp(join(tmpdir(), 'conveyor-storage-'))
  // Servers that require credentials, as the ones `conveyor up` starts.
  const credentials = newCredentials()
  const nats = await startNatsServer({
    port: 0,
    monitorPort: 0,
    dataDir: join(dir, 'nats'),
    auth: { users: [credentials.nats] },
  })
  const etcd = await startEtcdServer({ port: 0, peerPort: 0, dataDir: join(dir, 'etcd'), ...options.etcd })
  await requireEtcdAuth([etcd.endpoint], credentials.etcd)
  const connections = await connectServers(
    { natsUrl: nats.url, etcdEndpoints: [etcd.endpoint], natsAuth: credentials.nats, etcdAuth: credentials.etcd },
    { ...options.connect },
  )
  const gateway = await startGateway({
    auth: false,
    connections,
    port: 0,
    dataDir: join(dir, 'gateway'),
    logger: createLogger('gateway', 'error'),
    outboxSweepIntervalMs: 500,
    ...(options.eventReplyTimeoutMs ? { eventReplyTimeoutMs: options.eventReplyTimeoutMs } : {}),
  })
  const workers: ActorWorker[] = []
  return {
    etcd,
    connections,
    gateway,
    url: gateway.url,
    startWorker: async () => {
      const worker = await startWorker({ connections, leaseTtlSeconds: 2, logger: createLogger('worker', 'error') })
      workers.push(worker)
      await eventually(
        () => (worker.owned().size === PARTITIONS ? true : undefined),
        'the worker to own every partition',
        30_000,
      )
      return worker
    },
    close: async () => {
      for (const worker of workers) await worker.close()
      await gateway.close()
      await connections.close()
      await Promise.all([nats.stop(), etcd.stop()])
      await rm(dir, { recursive: true, force: true })
    },
  }
}
