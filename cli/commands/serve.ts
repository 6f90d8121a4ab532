import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { resolve } from 'node:path'
import { resolveConfig, type ConfigOverrides } from '../../runtime/config.ts'
import { connectServers } from '../../runtime/connections.ts'
import { startLocalServers } from '../../runtime/servers/local-cluster.ts'
import { startGateway } from '../../gateway/server.ts'
import { loadUws } from '../../gateway/uws.ts'
import { runDriver } from '../../actors/driver/run.ts'
import { shellDriver } from '../../actors/driver/builtin/shell.ts'
import type { DriverDefinition } from '../../actors/driver/types.ts'
import { startWorker } from '../../actors/worker/worker.ts'
import { isDriverDefinition } from '../../actors/driver/define.ts'
import { untilSignal } from '../signals.ts'

/** Drivers that ship with Conveyor: `conveyor up` runs them, `conveyor driver NAME` runs one. */
const BUILT_IN_DRIVERS: Readonly<Record<string, DriverDefinition>> = { shell: shellDriver }

export interface ServeFlags extends ConfigOverrides {
  readonly natsPort?: string | undefined
  readonly etcdPort?: string | undefined
}

function localPorts(flags: ServeFlags): { nats: number; natsMonitor: number; etcd: number; etcdPeer: number } {
  const port = (value: string | undefined, fallback: number, flag: string): number => {
    if (value === undefined) return fallback
    const n = Number(value)
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new TypeError(`--${flag} must be a TCP port (0-65535), got ${JSON.stringify(value)}`)
    return n
  }
  const nats = port(flags.natsPort, 4222, 'nats-port')
  const etcd = port(flags.etcdPort, 2379, 'etcd-port')
  return { nats, natsMonitor: nats === 0 ? 0 : 8222, etcd, etcdPeer: etcd === 0 ? 0 : etcd + 1 }
}

/** `conveyor up`: local etcd and NATS (unless given), then every role in this process. */
export async function up(flags: ServeFlags): Promise<number> {
  const useLocal = flags.natsUrl === undefined && flags.etcdEndpoints === undefined
  const config = resolveConfig(flags)
  await loadUws()
  const out = (line: string): boolean => process.stdout.write(line + '\n')
  const servers = useLocal ? await startLocalServers({ dataDir: config.dataDir, ports: localPorts(flags) }) : undefined
  try {
    const connections = await connectServers(servers ?? config, { name: 'conveyor up' })
    const gateway = await startGateway({ connections, port: config.httpPort, host: config.httpHost, dataDir: join(config.dataDir, 'gateway') })
    const actorWorker = await startWorker({ connections, heapSoftLimitMb: 256 })
    const builtIns = await Promise.all(Object.values(BUILT_IN_DRIVERS).map((d) => runDriver(d, { connections, workspaceRoot: join(config.dataDir, 'workspaces') })))
    out(`Conveyor is up.`)
    out(`  API:  ${gateway.url}`)
    out(`  NATS: ${servers?.natsUrl ?? config.natsUrl}`)
    out(`  etcd: ${(servers?.etcdEndpoints ?? config.etcdEndpoints).join(',')}`)
    out(`  data: ${config.dataDir}`)
    out(`  drivers: ${Object.keys(BUILT_IN_DRIVERS).join(', ')} (built in)`)
    out(`Press Ctrl-C to stop.`)
    return await untilSignal(
      async () => {
        for (const handle of builtIns) await handle.close()
        await actorWorker.close()
        await gateway.close()
        await connections.close()
        await servers?.stop()
      },
      (fatal) => {
        if (!servers) return
        servers.nats.child.onUnexpectedExit = (code, output) => fatal(`nats-server exited (code ${code}): ${output.trim().split('\n').at(-1) ?? ''}`)
        servers.etcd.child.onUnexpectedExit = (code, output) => fatal(`etcd exited (code ${code}): ${output.trim().split('\n').at(-1) ?? ''}`)
      },
    )
  } catch (error) {
    await servers?.stop()
    throw error
  }
}

/** `conveyor gateway`: the HTTP/WebSocket API against external servers. */
export async function gateway(flags: ServeFlags): Promise<number> {
  const config = resolveConfig(flags)
  await loadUws()
  const connections = await connectServers(config, { name: 'conveyor gateway' })
  const running = await startGateway({ connections, port: config.httpPort, host: config.httpHost, dataDir: join(config.dataDir, 'gateway') }).catch(async (error: unknown) => {
    await connections.close()
    throw error
  })
  process.stdout.write(`Conveyor gateway listening on ${running.url}\n`)
  return await untilSignal(async () => {
    await running.close()
    await connections.close()
  })
}

/** `conveyor worker`: hosts resource actors (and relays the outbox) against external servers. */
export async function worker(flags: ServeFlags): Promise<number> {
  const config = resolveConfig(flags)
  const connections = await connectServers(config, { name: 'conveyor worker' })
  const running = await startWorker({
    connections,
    ...(process.env.CONVEYOR_WORKER_LEASE_TTL ? { leaseTtlSeconds: Number(process.env.CONVEYOR_WORKER_LEASE_TTL) } : {}),
    ...(process.env.CONVEYOR_WORKER_HEAP_MB ? { heapSoftLimitMb: Number(process.env.CONVEYOR_WORKER_HEAP_MB) } : {}),
  })
  process.stdout.write(`Conveyor worker ${running.id} running\n`)
  return await untilSignal(async () => {
    await running.close()
    await connections.close()
  })
}

/** `conveyor driver FILE | NAME`: runs the driver a module exports (default export or `driver`), or a built-in one by name. */
export async function driver(flags: ServeFlags, file: string | undefined): Promise<number> {
  if (!file) throw new TypeError(`usage: conveyor driver ./my-driver.ts (or a built-in driver: ${Object.keys(BUILT_IN_DRIVERS).join(', ')})`)
  const builtIn = BUILT_IN_DRIVERS[file]
  if (builtIn) {
    const config = resolveConfig(flags)
    const handle = await runDriver(builtIn, { natsUrl: config.natsUrl, workspaceRoot: join(config.dataDir, 'workspaces') })
    process.stdout.write(`Conveyor driver ${builtIn.name} running (built in)\n`)
    return await untilSignal(() => handle.close())
  }
  if (/\.[cm]?tsx?$/.test(file)) {
    // Running from the compiled dist/, a TypeScript driver file still needs the loader.
    const { register } = await import('tsx/esm/api')
    register()
  }
  const module = (await import(pathToFileURL(resolve(file)).href)) as { default?: unknown; driver?: unknown }
  const definition = module.default ?? module.driver
  if (!isDriverDefinition(definition)) throw new TypeError(`${file} must export a driver made with defineDriver() as its default export`)
  const config = resolveConfig(flags)
  const handle = await runDriver(definition, { natsUrl: config.natsUrl, workspaceRoot: join(config.dataDir, 'workspaces') })
  process.stdout.write(`Conveyor driver ${definition.name} running (${definition.resources.length > 0 ? `serves ${definition.resources.join(', ')} and its pipeline steps` : 'runs its pipeline steps'})\n`)
  return await untilSignal(() => handle.close())
}
