import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { startLocalServers, type LocalServers } from '../runtime/servers/local-cluster.ts'
import { connectServers, type Connections } from '../runtime/connections.ts'
import { startGateway, type Gateway } from '../gateway/server.ts'
import { createLogger } from '../runtime/logger.ts'
import { PARTITIONS } from '../runtime/keys.ts'
import { startWorker, type ActorWorker } from '../actors/worker/worker.ts'
import type { DriverHandle } from '../actors/driver/types.ts'
import { TokenStore } from '../runtime/token-store.ts'

export interface Stack {
  readonly servers: LocalServers
  readonly connections: Connections
  readonly gateway: Gateway
  readonly url: string
  readonly env: Record<string, string>
  /** The actor worker, when the stack was started with one (it owns every partition). */
  readonly worker: ActorWorker | undefined
  /** Drivers to close (first) with the stack. */
  readonly drivers: DriverHandle[]
  close(): Promise<void>
}

/** Real nats-server and etcd on ephemeral ports, a gateway on a free port, and optionally an actor worker, all torn down by close(). */
export async function startStack(options: { worker?: boolean } = {}): Promise<Stack> {
  const servers = await startLocalServers()
  const connections = await connectServers(servers)
  const gatewayDir = await mkdtemp(join(tmpdir(), 'conveyor-gw-'))
  const gateway = await startGateway({
    connections,
    port: 0,
    dataDir: gatewayDir,
    logger: createLogger('gateway', 'error'),
    outboxSweepIntervalMs: 500,
    // Tests of everything but access itself run without tokens (explicitly, on loopback); test/auth covers tokens.
    auth: false,
  })
  const env = {
    // The servers' URLs and the control plane's NATS and etcd credentials.
    ...servers.env,
    CONVEYOR_LOG_LEVEL: 'error',
    CONVEYOR_AUTH: 'off',
  }
  let worker: ActorWorker | undefined
  if (options.worker) {
    const started = await startWorker({ connections, leaseTtlSeconds: 2, logger: createLogger('worker', 'error') })
    worker = started
    await eventually(
      () => (started.owned().size === PARTITIONS ? true : undefined),
      'the worker to own every partition',
    )
  }
  const drivers: DriverHandle[] = []
  return {
    servers,
    connections,
    gateway,
    url: gateway.url,
    env,
    worker,
    drivers,
    close: async () => {
      for (const driver of drivers) await driver.close()
      await worker?.close()
      await gateway.close()
      await connections.close()
      await servers.stop()
      await rm(gatewayDir, { recursive: true, force: true })
    },
  }
}

export interface JsonResponse<T = any> {
  readonly status: number
  readonly body: T
  readonly headers: Headers
}

/** One HTTP request with a JSON (or raw string) body, answered as parsed JSON. */
export async function api<T = any>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<JsonResponse<T>> {
  const response = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  })
  const text = await response.text()
  return { status: response.status, body: text ? JSON.parse(text) : undefined, headers: response.headers }
}

/** Polls until `check` returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  while (Date.now() < deadline) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (error) {
      lastError = error
    }
    await delay(25)
  }
  throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`)
}

/** A gateway with authentication on beside a stack's (which runs without), with an admin token. */
export interface SecuredGateway {
  readonly gateway: Gateway
  readonly url: string
  readonly admin: string
  /** A token of another role. */
  token(role: 'admin' | 'operator' | 'viewer'): Promise<string>
  close(): Promise<void>
}

export async function startSecuredGateway(stack: Stack): Promise<SecuredGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'conveyor-gw-auth-'))
  const gateway = await startGateway({
    connections: stack.connections,
    port: 0,
    dataDir: dir,
    logger: createLogger('gateway', 'error'),
  })
  const tokens = new TokenStore(stack.connections.etcd)
  const admin = (await tokens.create({ role: 'admin' })).token
  return {
    gateway,
    url: gateway.url,
    admin,
    token: async (role) => (await tokens.create({ role })).token,
    close: async () => {
      await gateway.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
