import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream'
import { nanos } from '@nats-io/transport-node'
import { streams, subjects } from './keys.ts'

/** How long (and how much) the event and log streams keep; unset fields keep what a stream has. */
export interface RetentionOptions {
  /** @default 7 days for a new stream (env `CONVEYOR_EVENTS_RETENTION`; the inbox keeps as long) */
  readonly eventsMaxAgeMs?: number
  /** @default 7 days for a new stream (env `CONVEYOR_LOGS_RETENTION`) */
  readonly logsMaxAgeMs?: number
  /**
   * Bytes the events stream may hold. It carries work (resource changes and step dispatches for
   * drivers), so when full it refuses new events (writers get 503) rather than drop old ones.
   * @default 4 GiB for a new or unlimited stream (env `CONVEYOR_EVENTS_MAX_BYTES`)
   */
  readonly eventsMaxBytes?: number
  /** Bytes the actor inbox may hold; refuses events when full, like the events stream. @default 1 GiB (env `CONVEYOR_INBOX_MAX_BYTES`) */
  readonly inboxMaxBytes?: number
  /** @default unlimited (env `CONVEYOR_LOGS_MAX_BYTES`); the log stream drops its oldest lines when full */
  readonly logsMaxBytes?: number
  /** Window inside which JetStream drops a duplicate message id. @default 2 minutes */
  readonly duplicateWindowMs?: number
}

export const WEEK_MS = 7 * 24 * 3600 * 1000
export const DEFAULT_EVENTS_MAX_BYTES = 4 * 1024 ** 3
export const DEFAULT_INBOX_MAX_BYTES = 1024 ** 3
/** A default limit is halved until the server has room for it, but never below this. */
const SMALLEST_DEFAULT_BYTES = 64 * 1024 ** 2

/**
 * Streams whose messages are work consumers must still do: when full they refuse (discard new),
 * and only what every durable consumer has processed is trimmed (see `StreamSpace`). The log
 * stream is history: it drops its oldest lines.
 */
export const WORK_STREAMS: readonly string[] = [streams.events, streams.inbox]

interface Limits {
  readonly maxAgeMs: number | undefined
  readonly maxBytes: number | undefined
  /** The limit a new (or unlimited) work stream gets when none is set. */
  readonly defaultMaxBytes: number | undefined
}

function streamConfigs(retention: RetentionOptions = {}): (Partial<StreamConfig> & { name: string; limits: Limits })[] {
  const stream = (
    name: string,
    subject: string,
    limits: Limits,
  ): Partial<StreamConfig> & { name: string; limits: Limits } => ({
    name,
    subjects: [subject],
    // Limits everywhere; for the inbox this matters most: a work queue deletes a message per ack,
    // which costs more than the event itself, while partition consumers ack in bulk (AckAll).
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: WORK_STREAMS.includes(name) ? DiscardPolicy.New : DiscardPolicy.Old,
    duplicate_window: nanos(retention.duplicateWindowMs ?? 120_000),
    limits,
  })
  return [
    stream(streams.events, subjects.allEvents(), {
      maxAgeMs: retention.eventsMaxAgeMs,
      maxBytes: retention.eventsMaxBytes,
      defaultMaxBytes: DEFAULT_EVENTS_MAX_BYTES,
    }),
    stream(streams.inbox, subjects.allInbox(), {
      maxAgeMs: retention.eventsMaxAgeMs,
      maxBytes: retention.inboxMaxBytes,
      defaultMaxBytes: DEFAULT_INBOX_MAX_BYTES,
    }),
    stream(streams.logs, subjects.allLogs(), {
      maxAgeMs: retention.logsMaxAgeMs,
      maxBytes: retention.logsMaxBytes,
      defaultMaxBytes: undefined,
    }),
  ]
}

/** JetStream's "insufficient storage resources available": the server cannot reserve a stream's max bytes. */
const INSUFFICIENT_RESOURCES = 10047

/**
 * Adds or updates a stream with `maxBytes`; a default limit the server has no room for is halved
 * until it has (a limit someone set is not: that fails with the server's reason).
 */
async function withRoom(
  apply: (maxBytes: number) => Promise<unknown>,
  maxBytes: number,
  isDefault: boolean,
): Promise<void> {
  for (let bytes = maxBytes; ; bytes = Math.floor(bytes / 2)) {
    try {
      await apply(bytes)
      return
    } catch (error) {
      const noRoom = error instanceof JetStreamApiError && error.code === INSUFFICIENT_RESOURCES
      if (!noRoom || !isDefault || bytes / 2 < SMALLEST_DEFAULT_BYTES) throw error
    }
  }
}

/**
 * Creates the streams (a week of history unless told otherwise), or applies the limits this
 * process was explicitly given to existing ones; a process started without settings leaves the
 * limits another one set alone.
 */
export async function ensureStreams(
  jsm: JetStreamManager,
  retention?: RetentionOptions,
  /** Copies of a stream created here (JetStream cluster nodes holding it); an existing stream keeps its own. */
  replicas = 1,
): Promise<void> {
  for (const { limits, ...config } of streamConfigs(retention)) {
    const name = config.name
    const existing = await jsm.streams.info(name).catch((error: unknown) => {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return undefined
      throw error
    })
    if (!existing) {
      await withRoom(
        (maxBytes) =>
          jsm.streams.add({
            ...config,
            num_replicas: replicas,
            max_age: nanos(limits.maxAgeMs ?? WEEK_MS),
            max_bytes: maxBytes,
          }),
        limits.maxBytes ?? limits.defaultMaxBytes ?? -1,
        limits.maxBytes === undefined,
      )
      continue
    }
    if (existing.config.retention !== config.retention) {
      throw new Error(
        `stream ${name} has retention ${existing.config.retention}, this version needs ${config.retention}; drain it and delete it (nats stream rm ${name}) to upgrade`,
      )
    }
    // A work stream without a limit (made by an earlier version) gets the default one.
    const unlimited = existing.config.max_bytes === undefined || existing.config.max_bytes < 0
    const fallback =
      unlimited && limits.defaultMaxBytes !== undefined ? limits.defaultMaxBytes : existing.config.max_bytes
    await withRoom(
      (maxBytes) =>
        jsm.streams.update(name, {
          ...config,
          max_age: limits.maxAgeMs !== undefined ? nanos(limits.maxAgeMs) : existing.config.max_age,
          max_bytes: maxBytes,
        }),
      limits.maxBytes ?? fallback,
      limits.maxBytes === undefined && unlimited,
    )
  }
}
