import { mkdir } from 'node:fs/promises'
import { SupervisedChild, httpOk, type ChildSpec } from './child.ts'
import { freePort } from './ports.ts'

/** How a node joins a NATS cluster. */
export interface NatsClusterOptions {
  /** `--cluster_name`, the same on every node. */
  readonly name: string
  /** This node's route port (`--cluster nats://127.0.0.1:P`); `0` picks a free one. */
  readonly port: number
  /** Route URLs of the other nodes (`--routes`). */
  readonly routes: readonly string[]
}

export interface NatsServerOptions {
  /** Client port; `0` picks a free one. @default 4222 */
  readonly port?: number
  /** Monitoring port used for the readiness probe; `0` picks a free one. @default 8222 */
  readonly monitorPort?: number
  /** JetStream store directory. */
  readonly dataDir: string
  /** `--server_name`, unique in a cluster. @default what nats-server picks */
  readonly serverName?: string
  /** Join a cluster (JetStream clustered: streams may have replicas). */
  readonly cluster?: NatsClusterOptions
}

export interface RunningNats {
  readonly url: string
  readonly port: number
  readonly monitorPort: number
  /** The current process (a new one after `restart`). */
  readonly child: SupervisedChild
  stop(): Promise<void>
  /** Starts the server again on the same ports and store, after a kill or a stop. */
  restart(): Promise<void>
}

/** Starts `nats-server -js` bound to 127.0.0.1 (optionally as a cluster node) and waits until JetStream answers. */
export async function startNatsServer(options: NatsServerOptions): Promise<RunningNats> {
  const port = options.port === 0 ? await freePort() : (options.port ?? 4222)
  const monitorPort = options.monitorPort === 0 ? await freePort() : (options.monitorPort ?? 8222)
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 })
  const cluster = options.cluster
  const routePort = cluster ? (cluster.port === 0 ? await freePort() : cluster.port) : undefined
  const spec: ChildSpec = {
    name: options.serverName ? `nats-server ${options.serverName}` : 'nats-server',
    command: 'nats-server',
    args: [
      '-a',
      '127.0.0.1',
      '-p',
      String(port),
      '-m',
      String(monitorPort),
      '-js',
      '-sd',
      options.dataDir,
      ...(options.serverName ? ['--server_name', options.serverName] : []),
      ...(cluster
        ? [
            '--cluster_name',
            cluster.name,
            '--cluster',
            `nats://127.0.0.1:${routePort}`,
            ...(cluster.routes.length > 0 ? ['--routes', cluster.routes.join(',')] : []),
          ]
        : []),
    ],
    debianPackage: 'nats-server',
    // A cluster node answers once its JetStream is on; the meta leader may come later (see local-cluster).
    ready: () => httpOk(`http://127.0.0.1:${monitorPort}/healthz?js-enabled-only=true`),
    readyTimeoutMs: 15_000,
  }
  let child = await SupervisedChild.start(spec)
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    monitorPort,
    get child() {
      return child
    },
    stop: () => child.stop(),
    restart: async () => {
      await child.stop()
      child = await SupervisedChild.start(spec)
    },
  }
}
