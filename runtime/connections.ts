export { connectNats, type NatsConnections } from './nats-connection.ts'
import { Etcd3, GRPCDeadlineExceededError, GRPCUnavailableError } from 'etcd3'
import { errors as natsErrors } from '@nats-io/transport-node'
import { ConveyorError } from './errors.ts'
import { keys } from './keys.ts'
import { connectNats, describe, type NatsConnections } from './nats-connection.ts'
import type { RetentionOptions } from './streams.ts'
import { etcdLimitsFromEnv, type ConveyorConfig, type EtcdAuth } from './config.ts'
import { etcdClientAuth, isEtcdAuthRefusal } from './etcd-client-auth.ts'
import { etcdFaultHandling, isEtcdNoSpace, isHostFault } from './etcd-faults.ts'
import { ETCD_MAX_RESPONSE_BYTES } from './etcd-ops.ts'
import { EtcdSpace } from './etcd-space.ts'
import { StreamSpace } from './stream-space.ts'
import { createLogger, type Logger } from './logger.ts'

/** The live connections to etcd and NATS shared by every component of a control-plane process. */
export interface Connections extends NatsConnections {
  readonly etcd: Etcd3
  /** etcd's database size and alarms; reclaims space before (and when) etcd refuses writes for lack of it. */
  readonly etcdSpace: EtcdSpace
  /** How full each stream is; trims what consumers processed from the work streams. */
  readonly streamSpace: StreamSpace
}

export interface ConnectOptions {
  /** Milliseconds to wait for each server at start-up. @default 5000 */
  readonly connectTimeoutMs?: number
  /** Deadline of one etcd call. @default 5000 */
  readonly etcdCallTimeoutMs?: number
  /** Stream limits to apply. @default what the environment sets (`retentionFromEnv`) */
  readonly retention?: RetentionOptions
  /** Connection name shown by `nats-server` monitoring. */
  readonly name?: string
  /** etcd's `--quota-backend-bytes` and `--max-request-bytes`. @default `etcdLimitsFromEnv()` */
  readonly etcdQuotaBytes?: number
  readonly etcdMaxRequestBytes?: number
  /** How often etcd's space and the streams' fill are checked. @default 5000 and 2000 */
  readonly spaceCheckIntervalMs?: number
  /** Where the space keepers log. @default a logger named `storage` */
  readonly logger?: Logger
}

/** Where the servers are and, when they require it, how to sign in (a `ConveyorConfig` or `LocalServers` will do). */
export type ServerAddresses = Pick<ConveyorConfig, 'natsUrl' | 'etcdEndpoints'> &
  Partial<Pick<ConveyorConfig, 'natsAuth' | 'etcdAuth'>>

/**
 * Connects to etcd and NATS and makes sure the JetStream streams exist.
 * Fails with one clear line when a server cannot be reached or refuses the credentials.
 */
export async function connectServers(config: ServerAddresses, options: ConnectOptions = {}): Promise<Connections> {
  const logger = options.logger ?? createLogger('storage')
  const limits = etcdLimitsFromEnv()
  const etcdSpace = new EtcdSpace(config.etcdEndpoints, {
    quotaBytes: options.etcdQuotaBytes ?? limits.quotaBytes,
    ...(config.etcdAuth ? { auth: config.etcdAuth } : {}),
    ...(options.spaceCheckIntervalMs ? { checkIntervalMs: options.spaceCheckIntervalMs } : {}),
    logger,
  })
  const etcd = await connectEtcd(config.etcdEndpoints, config.etcdAuth, options, {
    maxRequestBytes: options.etcdMaxRequestBytes ?? limits.maxRequestBytes,
    onNoSpace: (refusedAt) => etcdSpace.reclaim('nospace', refusedAt),
  }).catch(async (error: unknown) => {
    await etcdSpace.close()
    throw error
  })
  let nats: NatsConnections
  try {
    nats = await connectNats(config.natsUrl, { ...options, ...(config.natsAuth ? { auth: config.natsAuth } : {}) })
  } catch (error) {
    etcd.close()
    await etcdSpace.close()
    throw error
  }
  const streamSpace = new StreamSpace(nats.jsm, nats.publisher, {
    ...(options.spaceCheckIntervalMs ? { checkIntervalMs: options.spaceCheckIntervalMs } : {}),
    logger,
  })
  etcdSpace.start()
  streamSpace.start()
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await Promise.all([streamSpace.close(), etcdSpace.close()])
      await nats.close()
      etcd.close()
    })()
    return closing
  }
  return { ...nats, etcd, etcdSpace, streamSpace, close, [Symbol.asyncDispose]: close }
}

async function connectEtcd(
  endpoints: readonly string[],
  auth: EtcdAuth | undefined,
  options: ConnectOptions,
  limits: { maxRequestBytes: number; onNoSpace: (refusedAt: number) => Promise<boolean> },
): Promise<Etcd3> {
  const timeout = options.connectTimeoutMs ?? 5000
  const callTimeout = options.etcdCallTimeoutMs ?? 5000
  const etcd = new Etcd3({
    hosts: [...endpoints],
    ...etcdClientAuth(auth),
    dialTimeout: timeout,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeout }),
    // Any single value etcd accepts must fit in a response, and pages are sized well below this.
    grpcOptions: {
      'grpc.max_receive_message_length': Math.max(ETCD_MAX_RESPONSE_BYTES, 2 * limits.maxRequestBytes),
    },
    faultHandling: etcdFaultHandling({ onNoSpace: limits.onNoSpace }),
  })
  try {
    await etcd
      .get(keys.ping())
      .options({ deadline: Date.now() + timeout })
      .string()
  } catch (error) {
    etcd.close()
    if (isEtcdAuthRefusal(error))
      throw new ConveyorError(
        'etcd-unauthorized',
        `etcd at ${endpoints.join(',')} refused ${auth?.username ? `the user ${auth.username}` : 'a client without credentials'} (set CONVEYOR_ETCD_USER and CONVEYOR_ETCD_PASSWORD): ${describe(error)}`,
        { kind: 'unavailable', cause: error },
      )
    throw new ConveyorError('etcd-unreachable', `cannot reach etcd at ${endpoints.join(',')}: ${describe(error)}`, {
      kind: 'unavailable',
      cause: error,
    })
  }
  return etcd
}

/** Errors our own StreamPublisher raises when JetStream does not answer. */
const UNAVAILABLE_NAMES = new Set(['TimeoutError', 'NoRespondersError', 'ClosedConnectionError'])

/** True when an error means a server is unreachable rather than the request being wrong. */
export function isServerUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  return (
    isHostFault(error) ||
    // etcd refuses writes until space is reclaimed: unavailable for now, like a server that is down.
    isEtcdNoSpace(error) ||
    error instanceof GRPCUnavailableError ||
    error instanceof GRPCDeadlineExceededError ||
    error instanceof natsErrors.TimeoutError ||
    error instanceof natsErrors.RequestError ||
    error instanceof natsErrors.ConnectionError ||
    error instanceof natsErrors.ClosedConnectionError ||
    error instanceof natsErrors.DrainingConnectionError ||
    error instanceof natsErrors.NoRespondersError ||
    UNAVAILABLE_NAMES.has(error.name) ||
    // etcd3's circuit breaker (cockatiel) marks its errors so.
    (error as { isBrokenCircuitError?: unknown }).isBrokenCircuitError === true
  )
}
