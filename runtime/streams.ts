import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream'
import { nanos } from '@nats-io/transport-node'
import { streams, subjects } from './keys.ts'

/** How long the event and log streams keep history. */
export interface RetentionOptions {
  /** @default 7 days */
  readonly eventsMaxAgeMs?: number
  /** @default 7 days */
  readonly logsMaxAgeMs?: number
  /** Window inside which JetStream drops a duplicate message id. @default 2 minutes */
  readonly duplicateWindowMs?: number
}

const WEEK_MS = 7 * 24 * 3600 * 1000

function streamConfigs(retention: RetentionOptions = {}): (Partial<StreamConfig> & { name: string })[] {
  const stream = (name: string, subject: string, maxAgeMs: number): Partial<StreamConfig> & { name: string } => ({
    name,
    subjects: [subject],
    // Limits everywhere; for the inbox this matters most: a work queue deletes a message per ack,
    // which costs more than the event itself, while partition consumers ack in bulk (AckAll).
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(maxAgeMs),
    duplicate_window: nanos(retention.duplicateWindowMs ?? 120_000),
  })
  const eventsMaxAge = retention.eventsMaxAgeMs ?? WEEK_MS
  return [
    stream(streams.events, subjects.allEvents(), eventsMaxAge),
    stream(streams.inbox, subjects.allInbox(), eventsMaxAge),
    stream(streams.logs, subjects.allLogs(), retention.logsMaxAgeMs ?? WEEK_MS),
  ]
}

/** Creates the streams, or updates their limits when they already exist. */
export async function ensureStreams(jsm: JetStreamManager, retention?: RetentionOptions): Promise<void> {
  for (const config of streamConfigs(retention)) {
    const name = config.name
    const existing = await jsm.streams.info(name).catch((error: unknown) => {
      if (error instanceof Error && /stream not found/i.test(error.message)) return undefined
      throw error
    })
    if (!existing) {
      await jsm.streams.add(config)
      continue
    }
    if (existing.config.retention !== config.retention) {
      throw new Error(`stream ${name} has retention ${existing.config.retention}, this version needs ${config.retention}; drain it and delete it (nats stream rm ${name}) to upgrade`)
    }
    await jsm.streams.update(name, config)
  }
}
