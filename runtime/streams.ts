import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream'
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
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const SIZES: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4 }

/** `7d`, `168h`, `90m`, `30s`, `500ms` or plain milliseconds. */
export function parseDuration(text: string, source: string): number {
  const match = /^\s*(\d+)\s*(ms|s|m|h|d)?\s*$/.exec(text)
  if (!match || Number(match[1]) <= 0) throw new TypeError(`${source} must be a duration such as 7d, 168h, 90m or 30s, got ${JSON.stringify(text)}`)
  return Number(match[1]) * UNITS[match[2] ?? 'ms']!
}

/** `10GiB`, `500MB`, `1048576`. */
export function parseSize(text: string, source: string): number {
  const match = /^\s*(\d+)\s*([kmgt]i?b|b)?\s*$/i.exec(text)
  if (!match || Number(match[1]) <= 0) throw new TypeError(`${source} must be a size such as 10GiB or 500MB, got ${JSON.stringify(text)}`)
  return Number(match[1]) * SIZES[(match[2] ?? '').toLowerCase()]!
}

/** Retention settings from the environment; only what is set there is returned. */
export function retentionFromEnv(env: NodeJS.ProcessEnv = process.env): RetentionOptions {
  return {
    ...(env.CONVEYOR_EVENTS_RETENTION ? { eventsMaxAgeMs: parseDuration(env.CONVEYOR_EVENTS_RETENTION, 'CONVEYOR_EVENTS_RETENTION') } : {}),
    ...(env.CONVEYOR_LOGS_RETENTION ? { logsMaxAgeMs: parseDuration(env.CONVEYOR_LOGS_RETENTION, 'CONVEYOR_LOGS_RETENTION') } : {}),
    ...(env.CONVEYOR_EVENTS_MAX_BYTES ? { eventsMaxBytes: parseSize(env.CONVEYOR_EVENTS_MAX_BYTES, 'CONVEYOR_EVENTS_MAX_BYTES') } : {}),
    ...(env.CONVEYOR_LOGS_MAX_BYTES ? { logsMaxBytes: parseSize(env.CONVEYOR_LOGS_MAX_BYTES, 'CONVEYOR_LOGS_MAX_BYTES') } : {}),
  }
}

interface Limits {
  readonly maxAgeMs: number | undefined
  readonly maxBytes: number | undefined
}

function streamConfigs(retention: RetentionOptions = {}): (Partial<StreamConfig> & { name: string; limits: Limits })[] {
  const stream = (name: string, subject: string, limits: Limits): Partial<StreamConfig> & { name: string; limits: Limits } => ({
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
      if (error instanceof Error && /stream not found/i.test(error.message)) return undefined
      throw error
    })
    if (!existing) {
      await jsm.streams.add({ ...config, max_age: nanos(limits.maxAgeMs ?? WEEK_MS), max_bytes: limits.maxBytes ?? -1 })
      continue
    }
    if (existing.config.retention !== config.retention) {
      throw new Error(`stream ${name} has retention ${existing.config.retention}, this version needs ${config.retention}; drain it and delete it (nats stream rm ${name}) to upgrade`)
    }
    await jsm.streams.update(name, {
      ...config,
      max_age: limits.maxAgeMs !== undefined ? nanos(limits.maxAgeMs) : existing.config.max_age,
      max_bytes: limits.maxBytes ?? existing.config.max_bytes,
    })
  }
}
