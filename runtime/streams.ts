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
  /** @default 7 days for a new stream (env `CONVEYOR_EVENTS_RETENTION`) */
  readonly eventsMaxAgeMs?: number
  /** @default 7 days for a new stream (env `CONVEYOR_LOGS_RETENTION`) */
  readonly logsMaxAgeMs?: number
  /** Bytes the event (and inbox) stream may hold before the oldest go. @default unlimited (env `CONVEYOR_EVENTS_MAX_BYTES`) */
  readonly eventsMaxBytes?: number
  /** @default unlimited (env `CONVEYOR_LOGS_MAX_BYTES`) */
  readonly logsMaxBytes?: number
  /** Window inside which JetStream drops a duplicate message id. @default 2 minutes */
  readonly duplicateWindowMs?: number
}

export const WEEK_MS = 7 * 24 * 3600 * 1000
interface Limits {
  readonly maxAgeMs: number | undefined
  readonly maxBytes: number | undefined
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
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(retention.duplicateWindowMs ?? 120_000),
    limits,
  })
  const events = { maxAgeMs: retention.eventsMaxAgeMs, maxBytes: retention.eventsMaxBytes }
  return [
    stream(streams.events, subjects.allEvents(), events),
    stream(streams.inbox, subjects.allInbox(), events),
    stream(streams.logs, subjects.allLogs(), { maxAgeMs: retention.logsMaxAgeMs, maxBytes: retention.logsMaxBytes }),
  ]
}

/**
 * Creates the streams (a week of history unless told otherwise), or applies the limits this
 * process was explicitly given to existing ones; a process started without settings leaves the
 * limits another one set alone.
 */
export async function ensureStreams(jsm: JetStreamManager, retention?: RetentionOptions): Promise<void> {
  for (const { limits, ...config } of streamConfigs(retention)) {
    const name = config.name
    const existing = await jsm.streams.info(name).catch((error: unknown) => {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return undefined
      throw error
    })
    if (!existing) {
      await jsm.streams.add({ ...config, max_age: nanos(limits.maxAgeMs ?? WEEK_MS), max_bytes: limits.maxBytes ?? -1 })
      continue
    }
    if (existing.config.retention !== config.retention) {
      throw new Error(
        `stream ${name} has retention ${existing.config.retention}, this version needs ${config.retention}; drain it and delete it (nats stream rm ${name}) to upgrade`,
      )
    }
    await jsm.streams.update(name, {
      ...config,
      max_age: limits.maxAgeMs !== undefined ? nanos(limits.maxAgeMs) : existing.config.max_age,
      max_bytes: limits.maxBytes ?? existing.config.max_bytes,
    })
  }
}
