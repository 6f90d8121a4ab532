import { readFileSync } from 'node:fs'
import {
  AuthorizationError,
  connect,
  credsAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from '@nats-io/transport-node'
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import { ConveyorError } from './errors.ts'
import { StreamPublisher } from './stream-publisher.ts'
import { ensureStreams, type RetentionOptions } from './streams.ts'
import { natsAuthFromEnv, retentionFromEnv, streamReplicasFromEnv, type NatsAuth } from './config.ts'
import { whenJetStreamReady } from './jetstream-ready.ts'

export interface NatsConnectOptions {
  /** Milliseconds to wait for the server at start-up. @default 5000 */
  readonly connectTimeoutMs?: number
  /** Stream limits to apply. @default what the environment sets (`retentionFromEnv`) */
  readonly retention?: RetentionOptions
  /** Connection name shown by `nats-server` monitoring. */
  readonly name?: string
  /** Copies of each stream and bucket created. @default `CONVEYOR_STREAM_REPLICAS`, else 3 on a NATS cluster, else 1 */
  readonly streamReplicas?: number
  /** Milliseconds to wait for JetStream to be ready to create the streams (a cluster forming). @default 60000 */
  readonly streamsReadyTimeoutMs?: number
  /** How to sign in. @default the environment's (`natsAuthFromEnv`) */
  readonly auth?: NatsAuth
  /** Where replies to this connection's requests arrive (a driver identity may subscribe there only). @default `_INBOX` */
  readonly inboxPrefix?: string
  /** Create or update the streams (the control plane does; a driver identity may not). @default true */
  readonly createStreams?: boolean
}

/** nats.js options for `auth`: a user and password or a `.creds` file, and TLS verified against a CA. */
function signIn(auth: NatsAuth): Partial<ConnectionOptions> {
  return {
    ...(auth.credsFile
      ? { authenticator: credsAuthenticator(readFileSync(auth.credsFile)) }
      : auth.user !== undefined
        ? { user: auth.user, ...(auth.password !== undefined ? { pass: auth.password } : {}) }
        : {}),
    ...(auth.tlsCaFile ? { tls: { caFile: auth.tlsCaFile } } : {}),
  }
}

/** The NATS side of a process's connections: all a driver has. */
export interface NatsConnections {
  readonly nats: NatsConnection
  readonly js: JetStreamClient
  readonly jsm: JetStreamManager
  /** JetStream publishing for the hot paths (outbox, actor inbox). */
  readonly publisher: StreamPublisher
  /** Copies JetStream keeps of each stream and key-value bucket this process creates. */
  readonly streamReplicas: number
  /** True while the NATS connection is up (false while it reconnects). */
  natsConnected(): boolean
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/**
 * Connects to NATS only (what a driver needs) and makes sure the JetStream streams exist.
 * Fails with one clear line when the server cannot be reached.
 */
export async function connectNats(natsUrl: string, options: NatsConnectOptions = {}): Promise<NatsConnections> {
  const timeout = options.connectTimeoutMs ?? 5000
  const auth = options.auth ?? natsAuthFromEnv()
  let nats: NatsConnection
  try {
    nats = await connect({
      ...signIn(auth),
      // A comma list names the servers of a cluster: any one of them lets the connection start.
      servers: natsUrl
        .split(',')
        .map((url) => url.trim())
        .filter((url) => url.length > 0),
      timeout,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // nats.js otherwise builds an Error per request to keep its stack: a tenth of a busy worker's CPU.
      noAsyncTraces: true,
      name: options.name ?? 'conveyor',
      ...(options.inboxPrefix ? { inboxPrefix: options.inboxPrefix } : {}),
    })
  } catch (error) {
    if (error instanceof AuthorizationError)
      throw new ConveyorError(
        'nats-unauthorized',
        `NATS at ${natsUrl} refused ${auth.user ? `the user ${auth.user}` : auth.credsFile ? `the credentials in ${auth.credsFile}` : 'a client without credentials'} (set CONVEYOR_NATS_USER and CONVEYOR_NATS_PASSWORD, or CONVEYOR_NATS_CREDS)`,
        { kind: 'unavailable', cause: error },
      )
    throw new ConveyorError('nats-unreachable', `cannot reach NATS at ${natsUrl}: ${describe(error)}`, {
      kind: 'unavailable',
      cause: error,
    })
  }
  let connected = true
  void (async () => {
    for await (const status of nats.status()) {
      if (status.type === 'disconnect') connected = false
      else if (status.type === 'reconnect') connected = true
    }
  })()
  // A server in a cluster (nats-server --cluster_name) holds 3 copies unless told otherwise.
  const streamReplicas = options.streamReplicas ?? streamReplicasFromEnv() ?? (nats.info?.cluster ? 3 : 1)
  const readyTimeout = options.streamsReadyTimeoutMs ?? 60_000
  let jsm: JetStreamManager
  try {
    jsm = await whenJetStreamReady(
      async () => {
        const manager = await jetstreamManager(nats)
        if (options.createStreams !== false)
          await ensureStreams(manager, options.retention ?? retentionFromEnv(), streamReplicas)
        return manager
      },
      readyTimeout,
      (last, waited) =>
        new ConveyorError(
          'nats-unavailable',
          `JetStream at ${natsUrl} could not create its streams within ${Math.round(waited / 1000)} s ` +
            `(a cluster still forming, or too few of its nodes up for ${streamReplicas} replica(s)): ${describe(last)}`,
          { kind: 'unavailable', cause: last },
        ),
    )
  } catch (error) {
    await nats.close().catch(() => {})
    throw error
  }
  const js = jetstream(nats)
  const publisher = new StreamPublisher(nats, undefined, options.inboxPrefix)
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= nats.drain().catch(() => nats.close())
    return closing
  }
  return {
    nats,
    js,
    jsm,
    publisher,
    streamReplicas,
    natsConnected: () => connected && !nats.isClosed(),
    close,
    [Symbol.asyncDispose]: close,
  }
}

/** The first line of an error, for one-line messages. */
export function describe(error: unknown): string {
  if (error instanceof Error) return error.message.split('\n')[0] ?? error.name
  return String(error)
}
