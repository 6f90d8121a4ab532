/**
 * The limits of a lifecycle and of the actor record it produces. They keep every actor commit
 * within what etcd accepts (`--max-txn-ops` 128, `--max-request-bytes` 1.5 MiB), so that no
 * event can produce a record that can never be stored.
 */

/** States of one lifecycle, the root included. */
export const MAX_STATES = 500

/**
 * `after` delays that can be pending at once: those of the active states (a state, its ancestors,
 * and every region of an active parallel state). Each pending delay is one timer key, and one
 * commit may cancel every pending timer and schedule as many new ones: 2 × 32 operations, plus the
 * actor record and its outbox entry, leaves 62 of etcd's 128 operations per transaction for the
 * pipeline's step timers and left-over timer keys of the same batch.
 */
export const MAX_PENDING_DELAYS = 32

/** Sizes, in bytes of JSON, that an event's result must stay within. */
export interface ActorLimits {
  /** The lifecycle's context. @default 65536 (env `CONVEYOR_MAX_CONTEXT_BYTES`) */
  readonly maxContextBytes: number
  /** The whole actor record (context, pipeline run, drivers' work). @default 524288 (env `CONVEYOR_MAX_RECORD_BYTES`) */
  readonly maxRecordBytes: number
}

export const DEFAULT_ACTOR_LIMITS: ActorLimits = { maxContextBytes: 64 * 1024, maxRecordBytes: 512 * 1024 }

/** The largest record size that may be configured: under the 1,000,000 bytes one group commit carries. */
export const MAX_RECORD_BYTES_LIMIT = 900 * 1024

/** Bytes of a value as stored (UTF-8 JSON). */
export const jsonBytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value) ?? '')
