import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { ConveyorError } from '../errors.ts'
import { httpOk, startRestartable, type ChildSpec, type SupervisedChild } from './child.ts'
import { freePort, withFreshPorts } from './ports.ts'

/** How a node joins a NATS cluster. */
export interface NatsClusterOptions {
  /** `--cluster_name`, the same on every node. */
  readonly name: string
  /** This node's route port (`--cluster nats://127.0.0.1:P`); `0` picks a free one. */
  readonly port: number
  /** Route URLs of the other nodes (`--routes`). */
  readonly routes: readonly string[]
}

/** What a NATS user may publish and subscribe to (nats-server `permissions`). */
export interface NatsPermissions {
  readonly publish?: { readonly allow?: readonly string[]; readonly deny?: readonly string[] }
  readonly subscribe?: { readonly allow?: readonly string[]; readonly deny?: readonly string[] }
  /** Lets the user publish replies to the requests it received. */
  readonly allow_responses?: boolean
}

/** A user of the server; without `permissions`, it may publish and subscribe to everything. */
export interface NatsUser {
  readonly user: string
  readonly password: string
  readonly permissions?: NatsPermissions
}

/** Who may connect: clients (`users`) and, on a cluster, the other nodes (`routes`). */
export interface NatsServerAuth {
  readonly users: readonly NatsUser[]
  /** The user and password nodes of one cluster present to each other on their route port. */
  readonly routes?: { readonly user: string; readonly password: string }
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
  /** Users the server requires (written to `nats-server.conf` in `dataDir`, mode 0600). @default none: anyone on loopback may connect */
  readonly auth?: NatsServerAuth
}

/** The server's config file: users, and the cluster block whose route URLs carry the route password (never on the command line). */
function configText(
  auth: NatsServerAuth,
  cluster: NatsClusterOptions | undefined,
  routePort: number | undefined,
  storeDir: string,
): string {
  const routes = auth.routes
  const withRouteUser = (url: string): string =>
    routes ? url.replace(/^nats(-route)?:\/\//, `nats-route://${routes.user}:${routes.password}@`) : url
  const config = {
    // In the file, not as `-js`: nats-server 2.9 turns JetStream off on a reload of a file without it.
    jetstream: { store_dir: storeDir },
    authorization: { users: auth.users },
    ...(cluster
      ? {
          cluster: {
            name: cluster.name,
            listen: `127.0.0.1:${routePort}`,
            ...(routes ? { authorization: { user: routes.user, password: routes.password } } : {}),
            routes: cluster.routes.map(withRouteUser),
          },
        }
      : {}),
  }
  // nats-server reads JSON as its own config format.
  return JSON.stringify(config, null, 2) + '\n'
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
  /**
   * Replaces the users a server started with `auth` takes (for example, a driver's user with
   * `permissions`): rewrites its config file and has it reload, without dropping connections of
   * users that remain. Resolves once the server loaded the new config.
   */
  setUsers(users: readonly NatsUser[]): Promise<void>
}

/** When the server last loaded its config (changes on each reload). */
async function configLoadTime(monitorPort: number): Promise<string | undefined> {
  const response = await fetch(`http://127.0.0.1:${monitorPort}/varz`, { signal: AbortSignal.timeout(1000) })
  return ((await response.json()) as { config_load_time?: string }).config_load_time
}

/** Starts `nats-server -js` bound to 127.0.0.1 (optionally as a cluster node) and waits until JetStream answers. */
export function startNatsServer(options: NatsServerOptions): Promise<RunningNats> {
  return withFreshPorts(options.port === 0 || options.monitorPort === 0 || options.cluster?.port === 0, () =>
    startNatsServerOnce(options),
  )
}

async function startNatsServerOnce(options: NatsServerOptions): Promise<RunningNats> {
  const port = options.port === 0 ? await freePort() : (options.port ?? 4222)
  const monitorPort = options.monitorPort === 0 ? await freePort() : (options.monitorPort ?? 8222)
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 })
  const cluster = options.cluster
  const routePort = cluster ? (cluster.port === 0 ? await freePort() : cluster.port) : undefined
  const configFile = join(options.dataDir, 'nats-server.conf')
  const writeConfig = async (auth: NatsServerAuth): Promise<void> => {
    await writeFile(configFile, configText(auth, cluster, routePort, options.dataDir), { mode: 0o600 })
    await chmod(configFile, 0o600)
  }
  let auth = options.auth
  if (auth) await writeConfig(auth)
  const spec: ChildSpec = {
    name: options.serverName ? `nats-server ${options.serverName}` : 'nats-server',
    command: 'nats-server',
    args: [
      ...(options.auth ? ['-c', configFile] : []),
      '-a',
      '127.0.0.1',
      '-p',
      String(port),
      '-m',
      String(monitorPort),
      ...(options.auth ? [] : ['-js', '-sd', options.dataDir]),
      ...(options.serverName ? ['--server_name', options.serverName] : []),
      ...(cluster && !options.auth
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
  const server = await startRestartable(spec)
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    monitorPort,
    get child() {
      return server.child
    },
    stop: server.stop,
    restart: server.restart,
    setUsers: async (users) => {
      if (!auth) throw new TypeError('setUsers needs a server started with auth')
      auth = { ...auth, users }
      const loaded = await configLoadTime(monitorPort)
      await writeConfig(auth)
      if (server.child.pid !== undefined) process.kill(server.child.pid, 'SIGHUP')
      const deadline = Date.now() + 10_000
      while ((await configLoadTime(monitorPort).catch(() => loaded)) === loaded) {
        if (Date.now() > deadline)
          throw new ConveyorError(
            'server-reload-failed',
            `nats-server did not reload its users:\n${server.child.output.slice(-500)}`,
          )
        await delay(50)
      }
    },
  }
}
