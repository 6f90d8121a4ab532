export { connectNats, type NatsConnections } from './nats-connection.ts'
import { Etcd3, GRPCDeadlineExceededError, GRPCUnavailableError, isRecoverableError } from 'etcd3'
import { errors as natsErrors } from '@nats-io/transport-node'
import { ConveyorError } from './errors.ts'
import { keys } from './keys.ts'
import { connectNats, describe, type NatsConnections } from './nats-connection.ts'
import type { RetentionOptions } from './streams.ts'
import type { ConveyorConfig } from './config.ts'

/** The live connections to etcd and NATS shared by every component of a control-plane process. */
export interface Connections extends NatsConnections {
  readonly etcd: Etcd3
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
}

/**
 * Connects to etcd and NATS and makes sure the JetStream streams exist.
 * Fails with one clear line when a server cannot be reached.
 */
export async function connectServers(
  config: Pick<ConveyorConfig, 'natsUrl' | 'etcdEndpoints'>,
  options: ConnectOptions = {},
): Promise<Connections> {
  const etcd = await connectEtcd(config.etcdEndpoints, options)
  let nats: NatsConnections
  try {
    nats = await connectNats(config.natsUrl, options)
  } catch (error) {
    etcd.close()
    throw error
  }
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await nats.close()
      etcd.close()
    })()
    return closing
  }
  return { ...nats, etcd, close, [Symbol.asyncDispose]: close }
}

async function connectEtcd(endpoints: readonly string[], options: ConnectOptions): Promise<Etcd3> {
  const timeout = options.connectTimeoutMs ?? 5000
  const callTimeout = options.etcdCallTimeoutMs ?? 5000
  const etcd = new Etcd3({
    hosts: [...endpoints],
    dialTimeout: timeout,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeout }),
  })
  try {
    await etcd
      .get(keys.ping())
      .options({ deadline: Date.now() + timeout })
      .string()
  } catch (error) {
    etcd.close()
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
    isRecoverableError(error) ||
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
