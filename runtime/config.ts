import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseDuration, parseSize } from '../definitions/durations.ts'
import { DEFAULT_ACTOR_LIMITS, MAX_RECORD_BYTES_LIMIT, type ActorLimits } from '../definitions/lifecycle-limits.ts'
import type { RetentionOptions } from './streams.ts'

/** Everything a Conveyor process needs to find its servers. Resolved once by `resolveConfig`. */
export interface ConveyorConfig {
  /** @default 'nats://127.0.0.1:4222' (env `CONVEYOR_NATS_URL`) */
  readonly natsUrl: string
  /** @default ['http://127.0.0.1:2379'] (env `CONVEYOR_ETCD_ENDPOINTS`, comma separated) */
  readonly etcdEndpoints: readonly string[]
  /** @default 8080 (env `CONVEYOR_HTTP_PORT`) */
  readonly httpPort: number
  /** Address the gateway binds. @default '127.0.0.1' (env `CONVEYOR_HTTP_HOST`) */
  readonly httpHost: string
  /** @default './.conveyor' (env `CONVEYOR_DATA_DIR`) */
  readonly dataDir: string
  /** @default 'http://127.0.0.1:8080' (env `CONVEYOR_API_URL`) */
  readonly apiUrl: string
  /** Bearer token clients send (env `CONVEYOR_TOKEN`, else the local admin token in the data directory). */
  readonly token: string | undefined
  /** Web origins the gateway answers besides its own (env `CONVEYOR_ALLOWED_ORIGINS`, comma separated). */
  readonly allowedOrigins: readonly string[]
  /** Bearer tokens required by the gateway; off only with `--no-auth` or `CONVEYOR_AUTH=off`, on loopback. @default true */
  readonly auth: boolean
  /** How this process signs in to NATS (env `CONVEYOR_NATS_*`, else the local servers' credentials file). */
  readonly natsAuth: NatsAuth
  /** How this process signs in to etcd (env `CONVEYOR_ETCD_USER`, `_PASSWORD`, `_CA`, else the local servers' credentials file). */
  readonly etcdAuth: EtcdAuth
}

/** How a process signs in to NATS; empty: anonymously, in plain text. */
export interface NatsAuth {
  readonly user?: string
  readonly password?: string
  /** A `.creds` file (a user JWT and its NKey seed: NATS operator mode). */
  readonly credsFile?: string
  /** PEM file of the CA(s) that sign the server's certificate; connects with TLS. */
  readonly tlsCaFile?: string
}

/** How a process signs in to etcd; empty: anonymously, in plain text. */
export interface EtcdAuth {
  readonly username?: string
  readonly password?: string
  /** PEM file of the CA(s) that sign the members' certificates (use `https://` endpoints). */
  readonly caFile?: string
}

/** The environment variables that carry a process's control-plane credentials. */
export const CREDENTIAL_ENV = {
  natsUser: 'CONVEYOR_NATS_USER',
  natsPassword: 'CONVEYOR_NATS_PASSWORD',
  natsCreds: 'CONVEYOR_NATS_CREDS',
  natsTlsCa: 'CONVEYOR_NATS_TLS_CA',
  etcdUser: 'CONVEYOR_ETCD_USER',
  etcdPassword: 'CONVEYOR_ETCD_PASSWORD',
  etcdCa: 'CONVEYOR_ETCD_CA',
} as const

/** The file in the data directory where the servers `conveyor up` starts keep their credentials (mode 0600). */
export const CREDENTIALS_FILE = 'credentials.json'

/** What the credentials file holds (see `runtime/servers/credentials.ts`). */
export interface LocalCredentialsFile {
  readonly nats: { readonly user: string; readonly password: string }
  readonly natsRoutes: { readonly user: string; readonly password: string }
  readonly etcd: { readonly username: string; readonly password: string }
}

/** The credentials file of the local servers, if `dataDir` holds one. */
export function readCredentialsFile(dataDir: string): LocalCredentialsFile | undefined {
  try {
    return JSON.parse(readFileSync(join(dataDir, CREDENTIALS_FILE), 'utf8')) as LocalCredentialsFile
  } catch {
    return undefined
  }
}

const defined = <T extends object>(record: T): T =>
  Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined && value !== '')) as T

/** NATS credentials: `CONVEYOR_NATS_USER`/`_PASSWORD` or `CONVEYOR_NATS_CREDS`, `CONVEYOR_NATS_TLS_CA`; else the local servers' file in `CONVEYOR_DATA_DIR`. */
export function natsAuthFromEnv(env: NodeJS.ProcessEnv = process.env): NatsAuth {
  const fromEnv = defined({
    user: env[CREDENTIAL_ENV.natsUser],
    password: env[CREDENTIAL_ENV.natsPassword],
    credsFile: env[CREDENTIAL_ENV.natsCreds],
    tlsCaFile: env[CREDENTIAL_ENV.natsTlsCa],
  })
  if (fromEnv.user || fromEnv.credsFile) return fromEnv
  const local = readCredentialsFile(resolve(env.CONVEYOR_DATA_DIR ?? '.conveyor'))?.nats
  return local ? { ...fromEnv, ...local } : fromEnv
}

/** etcd credentials: `CONVEYOR_ETCD_USER`/`_PASSWORD`, `CONVEYOR_ETCD_CA`; else the local servers' file in `CONVEYOR_DATA_DIR`. */
export function etcdAuthFromEnv(env: NodeJS.ProcessEnv = process.env): EtcdAuth {
  const fromEnv = defined({
    username: env[CREDENTIAL_ENV.etcdUser],
    password: env[CREDENTIAL_ENV.etcdPassword],
    caFile: env[CREDENTIAL_ENV.etcdCa],
  })
  if (fromEnv.username) return fromEnv
  const local = readCredentialsFile(resolve(env.CONVEYOR_DATA_DIR ?? '.conveyor'))?.etcd
  return local ? { ...fromEnv, ...local } : fromEnv
}

export interface ConfigOverrides {
  readonly natsUrl?: string | undefined
  readonly etcdEndpoints?: string | readonly string[] | undefined
  readonly httpPort?: number | string | undefined
  readonly httpHost?: string | undefined
  readonly dataDir?: string | undefined
  readonly apiUrl?: string | undefined
  /** `--no-auth`: false. */
  readonly auth?: boolean | undefined
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

/** The file in the data directory where `conveyor up` keeps its admin token (mode 0600). */
export const ADMIN_TOKEN_FILE = 'admin.token'

/** `CONVEYOR_AUTH`: on unless `off`, `false` or `0`. */
function parseAuth(value: string | undefined): boolean {
  if (value === undefined || value === '') return true
  if (['off', 'false', '0'].includes(value.toLowerCase())) return false
  if (['on', 'true', '1'].includes(value.toLowerCase())) return true
  throw new TypeError(`CONVEYOR_AUTH must be on or off, got ${JSON.stringify(value)}`)
}

/** A token kept in a file (the local admin token), if the file exists and can be read. */
function readTokenFile(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim() || undefined
  } catch {
    return undefined
  }
}

/** Flags override the environment, the environment overrides defaults. */
export function resolveConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): ConveyorConfig {
  const etcd = overrides.etcdEndpoints ?? env.CONVEYOR_ETCD_ENDPOINTS ?? 'http://127.0.0.1:2379'
  const httpPort = parsePort(overrides.httpPort ?? env.CONVEYOR_HTTP_PORT ?? 8080, 'CONVEYOR_HTTP_PORT')
  const dataDir = resolve(overrides.dataDir ?? env.CONVEYOR_DATA_DIR ?? '.conveyor')
  return {
    natsUrl: overrides.natsUrl ?? env.CONVEYOR_NATS_URL ?? 'nats://127.0.0.1:4222',
    etcdEndpoints: typeof etcd === 'string' ? splitList(etcd) : etcd,
    httpPort,
    httpHost: overrides.httpHost ?? env.CONVEYOR_HTTP_HOST ?? '127.0.0.1',
    dataDir,
    apiUrl: overrides.apiUrl ?? env.CONVEYOR_API_URL ?? `http://127.0.0.1:${httpPort || 8080}`,
    allowedOrigins: splitList(env.CONVEYOR_ALLOWED_ORIGINS ?? ''),
    auth: overrides.auth ?? parseAuth(env.CONVEYOR_AUTH),
    token: env.CONVEYOR_TOKEN || readTokenFile(join(dataDir, ADMIN_TOKEN_FILE)),
    natsAuth: natsAuthFromEnv({ ...env, CONVEYOR_DATA_DIR: dataDir }),
    etcdAuth: etcdAuthFromEnv({ ...env, CONVEYOR_DATA_DIR: dataDir }),
  }
}

/** Driver settings the environment gives; only what is set is returned. */
export interface DriverEnvironment {
  readonly ackWaitMs?: number
  readonly maxDeliver?: number
  readonly workspaceRoot?: string
  /** `CONVEYOR_DRIVER_TOKEN` and `CONVEYOR_API_URL`: get the driver's own NATS identity from the gateway. */
  readonly identity?: { readonly apiUrl: string; readonly token: string }
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
    ...(env.CONVEYOR_DRIVER_TOKEN
      ? { identity: { apiUrl: env.CONVEYOR_API_URL ?? 'http://127.0.0.1:8080', token: env.CONVEYOR_DRIVER_TOKEN } }
      : {}),
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

/** Copies of each stream and bucket a process creates (`CONVEYOR_STREAM_REPLICAS`, 1 to 5); unset: 3 on a NATS cluster, else 1. */
export function streamReplicasFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const replicas = envNumber(env, 'CONVEYOR_STREAM_REPLICAS')
  if (replicas !== undefined && !(Number.isInteger(replicas) && replicas >= 1 && replicas <= 5))
    throw new TypeError(`CONVEYOR_STREAM_REPLICAS must be an integer from 1 to 5, got ${replicas}`)
  return replicas
}

/** How long a replay's consumer waits for a driver to fetch from it before it expires (`CONVEYOR_REPLAY_IDLE_TIMEOUT`, a duration). @default 1 hour */
export function replayIdleTimeoutFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  return env.CONVEYOR_REPLAY_IDLE_TIMEOUT
    ? parseDuration(env.CONVEYOR_REPLAY_IDLE_TIMEOUT, 'CONVEYOR_REPLAY_IDLE_TIMEOUT')
    : 3_600_000
}

/**
 * Size limits of an actor's context and record (`CONVEYOR_MAX_CONTEXT_BYTES`,
 * `CONVEYOR_MAX_RECORD_BYTES`, sizes such as `64KiB`): only what is set is returned; the record
 * may not exceed `MAX_RECORD_BYTES_LIMIT` nor be smaller than the context.
 */
export function actorLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<ActorLimits> {
  const size = (name: string): number | undefined => (env[name] ? parseSize(env[name], name) : undefined)
  const maxContextBytes = size('CONVEYOR_MAX_CONTEXT_BYTES')
  const maxRecordBytes = size('CONVEYOR_MAX_RECORD_BYTES')
  const record = maxRecordBytes ?? DEFAULT_ACTOR_LIMITS.maxRecordBytes
  if (record > MAX_RECORD_BYTES_LIMIT)
    throw new TypeError(`CONVEYOR_MAX_RECORD_BYTES must be at most ${MAX_RECORD_BYTES_LIMIT} bytes, got ${record}`)
  if ((maxContextBytes ?? DEFAULT_ACTOR_LIMITS.maxContextBytes) > record)
    throw new TypeError(`CONVEYOR_MAX_CONTEXT_BYTES must not exceed the record limit (${record} bytes)`)
  return {
    ...(maxContextBytes !== undefined ? { maxContextBytes } : {}),
    ...(maxRecordBytes !== undefined ? { maxRecordBytes } : {}),
  }
}

/** How much one execution of a driver (a step, a resource run) may log; past it lines are dropped after a marker. */
export interface RunLogLimits {
  /** Bytes of log messages. @default 10 MiB (env `CONVEYOR_LOG_STEP_MAX_BYTES`, a size such as `10MiB`) */
  readonly maxBytes: number
  /** Lines. @default 100000 (env `CONVEYOR_LOG_STEP_MAX_LINES`) */
  readonly maxLines: number
}

export const RUN_LOG_LIMIT_ENV = {
  maxBytes: 'CONVEYOR_LOG_STEP_MAX_BYTES',
  maxLines: 'CONVEYOR_LOG_STEP_MAX_LINES',
} as const

/** Log limits of one execution: the environment, then the defaults. */
export function runLogLimits(env: NodeJS.ProcessEnv = process.env): RunLogLimits {
  const bytes = env[RUN_LOG_LIMIT_ENV.maxBytes]
  const lines = envNumber(env, RUN_LOG_LIMIT_ENV.maxLines)
  if (lines !== undefined && (!Number.isInteger(lines) || lines < 1))
    throw new TypeError(`${RUN_LOG_LIMIT_ENV.maxLines} must be a positive whole number, got ${lines}`)
  return {
    maxBytes: bytes ? parseSize(bytes, RUN_LOG_LIMIT_ENV.maxBytes) : 10 * 1024 * 1024,
    maxLines: lines ?? 100_000,
  }
}

/** The `PATH` child processes (shell steps) inherit. */
export function inheritedPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.PATH ?? '/usr/local/bin:/usr/bin:/bin'
}

/** Requests per second one token may make (env `CONVEYOR_RATE_LIMIT`, 0: no limit), and failed token checks per minute from one address. */
export function rateLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): {
  requestsPerSecond: number
  failedAuthPerMinute: number
} {
  const perSecond = envNumber(env, 'CONVEYOR_RATE_LIMIT')
  if (perSecond !== undefined && (!Number.isInteger(perSecond) || perSecond < 0))
    throw new TypeError(
      `CONVEYOR_RATE_LIMIT must be a whole number of requests per second (0: no limit), got ${perSecond}`,
    )
  return { requestsPerSecond: perSecond ?? 1000, failedAuthPerMinute: 60 }
}

/** Caps of the gateway's streams (`/ws`, SSE and log sockets), each with a default and an environment variable. */
export interface StreamLimits {
  /** Subscriptions one `/ws` socket may hold. @default 256 (env `CONVEYOR_WS_MAX_SUBSCRIPTIONS`) */
  readonly subscriptionsPerSocket: number
  /** Open WebSocket and SSE streams per remote address. @default 256 (env `CONVEYOR_MAX_STREAMS_PER_CLIENT`) */
  readonly connectionsPerClient: number
  /** Bytes waiting for one socket (beyond what TCP holds) before it is closed with 1013. @default 16 MiB (env `CONVEYOR_WS_MAX_QUEUED_BYTES`) */
  readonly socketQueueBytes: number
  /** Bytes of recent changes a gateway keeps, over all types, for watchers that resume or lag. @default 64 MiB (env `CONVEYOR_WATCH_RESUME_BYTES`) */
  readonly resumeBufferBytes: number
  /** Largest page of a watch's initial list (a bigger single item is a page of its own). @default 1 MiB (env `CONVEYOR_WATCH_LIST_PAGE_BYTES`) */
  readonly listPageBytes: number
  /** Seconds a socket may go without a message or a pong (pings are sent meanwhile). @default 120 (env `CONVEYOR_WS_IDLE_TIMEOUT`, a duration) */
  readonly idleTimeoutSeconds: number
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = {
  subscriptionsPerSocket: 256,
  connectionsPerClient: 256,
  socketQueueBytes: 16 * 1024 * 1024,
  resumeBufferBytes: 64 * 1024 * 1024,
  listPageBytes: 1024 * 1024,
  idleTimeoutSeconds: 120,
}

/** The environment variable of each stream limit, for messages that name the limit. */
export const STREAM_LIMIT_ENV: Readonly<Record<keyof StreamLimits, string>> = {
  subscriptionsPerSocket: 'CONVEYOR_WS_MAX_SUBSCRIPTIONS',
  connectionsPerClient: 'CONVEYOR_MAX_STREAMS_PER_CLIENT',
  socketQueueBytes: 'CONVEYOR_WS_MAX_QUEUED_BYTES',
  resumeBufferBytes: 'CONVEYOR_WATCH_RESUME_BYTES',
  listPageBytes: 'CONVEYOR_WATCH_LIST_PAGE_BYTES',
  idleTimeoutSeconds: 'CONVEYOR_WS_IDLE_TIMEOUT',
}

/** Stream limits: `overrides`, then the environment, then the defaults. */
export function streamLimits(
  overrides: Partial<StreamLimits> = {},
  env: NodeJS.ProcessEnv = process.env,
): StreamLimits {
  const count = (name: keyof StreamLimits): number | undefined => {
    const value = envNumber(env, STREAM_LIMIT_ENV[name])
    if (value !== undefined && (!Number.isInteger(value) || value < 1))
      throw new TypeError(`${STREAM_LIMIT_ENV[name]} must be a positive whole number, got ${value}`)
    return value
  }
  const size = (name: keyof StreamLimits): number | undefined =>
    env[STREAM_LIMIT_ENV[name]] ? parseSize(env[STREAM_LIMIT_ENV[name]]!, STREAM_LIMIT_ENV[name]) : undefined
  const idle = env[STREAM_LIMIT_ENV.idleTimeoutSeconds]
  const fromEnv: Partial<Record<keyof StreamLimits, number | undefined>> = {
    subscriptionsPerSocket: count('subscriptionsPerSocket'),
    connectionsPerClient: count('connectionsPerClient'),
    socketQueueBytes: size('socketQueueBytes'),
    resumeBufferBytes: size('resumeBufferBytes'),
    listPageBytes: size('listPageBytes'),
    idleTimeoutSeconds: idle
      ? Math.ceil(parseDuration(/^\d+$/.test(idle) ? `${idle}s` : idle, STREAM_LIMIT_ENV.idleTimeoutSeconds) / 1000)
      : undefined,
  }
  const defined = Object.fromEntries(Object.entries(fromEnv).filter(([, value]) => value !== undefined))
  const limits = { ...DEFAULT_STREAM_LIMITS, ...defined, ...overrides }
  // uWebSockets.js takes 8 to 960 seconds (and aborts the process on anything else).
  if (!Number.isInteger(limits.idleTimeoutSeconds) || limits.idleTimeoutSeconds < 8 || limits.idleTimeoutSeconds > 960)
    throw new TypeError(
      `${STREAM_LIMIT_ENV.idleTimeoutSeconds} must be 8 to 960 seconds, got ${limits.idleTimeoutSeconds}`,
    )
  return limits
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
    ...(env.CONVEYOR_INBOX_MAX_BYTES
      ? { inboxMaxBytes: parseSize(env.CONVEYOR_INBOX_MAX_BYTES, 'CONVEYOR_INBOX_MAX_BYTES') }
      : {}),
    ...(env.CONVEYOR_LOGS_MAX_BYTES
      ? { logsMaxBytes: parseSize(env.CONVEYOR_LOGS_MAX_BYTES, 'CONVEYOR_LOGS_MAX_BYTES') }
      : {}),
  }
}

/** etcd's size limits, for the etcd `conveyor up` starts and for the clients of any etcd. */
export interface EtcdLimits {
  /** `--quota-backend-bytes`: the database size past which etcd refuses writes. @default 2 GiB (env `CONVEYOR_ETCD_QUOTA`, a size) */
  readonly quotaBytes: number
  /** `--max-request-bytes`: the largest request (and so value) etcd takes. @default 1.5 MiB (env `CONVEYOR_ETCD_MAX_REQUEST_BYTES`, a size) */
  readonly maxRequestBytes: number
}

export const DEFAULT_ETCD_LIMITS: EtcdLimits = { quotaBytes: 2 * 1024 ** 3, maxRequestBytes: 1.5 * 1024 ** 2 }

export function etcdLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): EtcdLimits {
  const size = (name: string): number | undefined => (env[name] ? parseSize(env[name], name) : undefined)
  return {
    quotaBytes: size('CONVEYOR_ETCD_QUOTA') ?? DEFAULT_ETCD_LIMITS.quotaBytes,
    maxRequestBytes: size('CONVEYOR_ETCD_MAX_REQUEST_BYTES') ?? DEFAULT_ETCD_LIMITS.maxRequestBytes,
  }
}

/** Versions of a resource kept, the current one included (`CONVEYOR_MAX_VERSIONS`, 1 to 1000). @default 10 */
export function maxVersionsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const versions = envNumber(env, 'CONVEYOR_MAX_VERSIONS')
  if (versions === undefined) return 10
  if (!Number.isInteger(versions) || versions < 1 || versions > 1000)
    throw new TypeError(`CONVEYOR_MAX_VERSIONS must be an integer from 1 to 1000, got ${versions}`)
  return versions
}

/** What the CLI's client commands read from the environment (flags override it, it overrides the config file). */
export interface ClientEnvironment {
  readonly apiUrl?: string
  readonly token?: string
  /** `CONVEYOR_CONTEXT`: the context of the config file to use. */
  readonly context?: string
  /** `$XDG_CONFIG_HOME/conveyor/config.yaml` (or `~/.config/conveyor/config.yaml`); `CONVEYOR_CONFIG` overrides it. */
  readonly configFile: string
  /** The data directory of a local instance, whose admin token is the last resort. */
  readonly dataDir: string
}

export function clientEnvironment(env: NodeJS.ProcessEnv = process.env): ClientEnvironment {
  const configHome = env.XDG_CONFIG_HOME || join(env.HOME ?? '.', '.config')
  return {
    ...(env.CONVEYOR_API_URL ? { apiUrl: env.CONVEYOR_API_URL } : {}),
    ...(env.CONVEYOR_TOKEN ? { token: env.CONVEYOR_TOKEN } : {}),
    ...(env.CONVEYOR_CONTEXT ? { context: env.CONVEYOR_CONTEXT } : {}),
    configFile: env.CONVEYOR_CONFIG || join(configHome, 'conveyor', 'config.yaml'),
    dataDir: resolve(env.CONVEYOR_DATA_DIR ?? '.conveyor'),
  }
}
