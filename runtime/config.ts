import { resolve } from 'node:path'
import { parseDuration, parseSize } from '../definitions/durations.ts'
import type { RetentionOptions } from './streams.ts'

/** Everything a Conveyor process needs to find its servers. Resolved once by `resolveConfig`. */
export interface ConveyorConfig {
  /** @default 'nats://127.0.0.1:4222' (env `CONVEYOR_NATS_URL`) */
  readonly natsUrl: string
  /** @default ['http://127.0.0.1:2379'] (env `CONVEYOR_ETCD_ENDPOINTS`, comma separated) */
  readonly etcdEndpoints: readonly string[]
  /** @default 8080 (env `CONVEYOR_HTTP_PORT`) */
  readonly httpPort: number
  /** Address the gateway binds; loopback unless asked, since the API has no auth yet. @default '127.0.0.1' (env `CONVEYOR_HTTP_HOST`) */
  readonly httpHost: string
  /** @default './.conveyor' (env `CONVEYOR_DATA_DIR`) */
  readonly dataDir: string
  /** @default 'http://127.0.0.1:8080' (env `CONVEYOR_API_URL`) */
  readonly apiUrl: string
  /** Bearer token clients send (env `CONVEYOR_TOKEN`). */
  readonly token: string | undefined
}

export interface ConfigOverrides {
  readonly natsUrl?: string | undefined
  readonly etcdEndpoints?: string | readonly string[] | undefined
  readonly httpPort?: number | string | undefined
  readonly httpHost?: string | undefined
  readonly dataDir?: string | undefined
  readonly apiUrl?: string | undefined
}

const splitList = (value: string): string[] =>
  value
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)

function parsePort(value: number | string, source: string): number {
  const port = typeof value === 'number' ? value : Number(value)
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new TypeError(`${source} must be a TCP port (0-65535), got ${JSON.stringify(value)}`)
  return port
}

/** Flags override the environment, the environment overrides defaults. */
export function resolveConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): ConveyorConfig {
  const etcd = overrides.etcdEndpoints ?? env.CONVEYOR_ETCD_ENDPOINTS ?? 'http://127.0.0.1:2379'
  const httpPort = parsePort(overrides.httpPort ?? env.CONVEYOR_HTTP_PORT ?? 8080, 'CONVEYOR_HTTP_PORT')
  return {
    natsUrl: overrides.natsUrl ?? env.CONVEYOR_NATS_URL ?? 'nats://127.0.0.1:4222',
    etcdEndpoints: typeof etcd === 'string' ? splitList(etcd) : etcd,
    httpPort,
    httpHost: overrides.httpHost ?? env.CONVEYOR_HTTP_HOST ?? '127.0.0.1',
    dataDir: resolve(overrides.dataDir ?? env.CONVEYOR_DATA_DIR ?? '.conveyor'),
    apiUrl: overrides.apiUrl ?? env.CONVEYOR_API_URL ?? `http://127.0.0.1:${httpPort || 8080}`,
    token: env.CONVEYOR_TOKEN || undefined,
  }
}

/** Driver settings the environment gives; only what is set is returned. */
export interface DriverEnvironment {
  readonly ackWaitMs?: number
  readonly maxDeliver?: number
  readonly workspaceRoot?: string
}

function envNumber(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const text = env[name]
  if (text === undefined || text === '') return undefined
  const value = Number(text)
  if (!Number.isFinite(value)) throw new TypeError(`${name} must be a number, got ${JSON.stringify(text)}`)
  return value
}

/** `CONVEYOR_DRIVER_ACK_WAIT_MS`, `CONVEYOR_DRIVER_MAX_DELIVER`, and the workspace root under `CONVEYOR_DATA_DIR`. */
export function driverEnvironment(env: NodeJS.ProcessEnv = process.env): DriverEnvironment {
  const ackWaitMs = envNumber(env, 'CONVEYOR_DRIVER_ACK_WAIT_MS')
  const maxDeliver = envNumber(env, 'CONVEYOR_DRIVER_MAX_DELIVER')
  return {
    ...(ackWaitMs !== undefined ? { ackWaitMs } : {}),
    ...(maxDeliver !== undefined ? { maxDeliver } : {}),
    ...(env.CONVEYOR_DATA_DIR ? { workspaceRoot: resolve(env.CONVEYOR_DATA_DIR, 'workspaces') } : {}),
  }
}

/** Worker settings the environment gives: `CONVEYOR_WORKER_LEASE_TTL` (seconds) and `CONVEYOR_WORKER_HEAP_MB`. */
export function workerEnvironment(env: NodeJS.ProcessEnv = process.env): {
  leaseTtlSeconds?: number
  heapSoftLimitMb?: number
} {
  const leaseTtlSeconds = envNumber(env, 'CONVEYOR_WORKER_LEASE_TTL')
  const heapSoftLimitMb = envNumber(env, 'CONVEYOR_WORKER_HEAP_MB')
  return {
    ...(leaseTtlSeconds !== undefined ? { leaseTtlSeconds } : {}),
    ...(heapSoftLimitMb !== undefined ? { heapSoftLimitMb } : {}),
  }
}

/** The log level (`CONVEYOR_LOG_LEVEL`: info, warn, error, silent). */
export function logLevelFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.CONVEYOR_LOG_LEVEL || undefined
}

/** The local etcd's compaction window (`CONVEYOR_ETCD_COMPACTION`, a duration). */
export function etcdCompactionFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  return env.CONVEYOR_ETCD_COMPACTION
    ? parseDuration(env.CONVEYOR_ETCD_COMPACTION, 'CONVEYOR_ETCD_COMPACTION')
    : undefined
}

/** The `PATH` child processes (shell steps) inherit. */
export function inheritedPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.PATH ?? '/usr/local/bin:/usr/bin:/bin'
}

/** Test switches: `CONVEYOR_TEST_FAULT` (a fault point) and `UWS_USE_FALLBACK` (pretend the native uWebSockets.js build is missing). */
export const testSwitches = {
  fault: (env: NodeJS.ProcessEnv = process.env): string | undefined => env.CONVEYOR_TEST_FAULT,
  uwsFallback: (env: NodeJS.ProcessEnv = process.env): boolean => Boolean(env.UWS_USE_FALLBACK),
}

/** Retention settings from the environment; only what is set there is returned. */
export function retentionFromEnv(env: NodeJS.ProcessEnv = process.env): RetentionOptions {
  return {
    ...(env.CONVEYOR_EVENTS_RETENTION
      ? { eventsMaxAgeMs: parseDuration(env.CONVEYOR_EVENTS_RETENTION, 'CONVEYOR_EVENTS_RETENTION') }
      : {}),
    ...(env.CONVEYOR_LOGS_RETENTION
      ? { logsMaxAgeMs: parseDuration(env.CONVEYOR_LOGS_RETENTION, 'CONVEYOR_LOGS_RETENTION') }
      : {}),
    ...(env.CONVEYOR_EVENTS_MAX_BYTES
      ? { eventsMaxBytes: parseSize(env.CONVEYOR_EVENTS_MAX_BYTES, 'CONVEYOR_EVENTS_MAX_BYTES') }
      : {}),
    ...(env.CONVEYOR_LOGS_MAX_BYTES
      ? { logsMaxBytes: parseSize(env.CONVEYOR_LOGS_MAX_BYTES, 'CONVEYOR_LOGS_MAX_BYTES') }
      : {}),
  }
}
