import type { ConsumerInfo, JetStreamManager } from '@nats-io/jetstream'
import { streamClasses, streams } from './keys.ts'
import type { Logger } from './logger.ts'
import { StreamFullError, type StreamPublisher } from './stream-publisher.ts'
import { WORK_STREAMS } from './streams.ts'
import { cutFor, firstOwed, planTrim, type ConsumerProgress } from './stream-trim.ts'

/** How full one stream is, as `/ready` shows it. */
export interface StreamUsage {
  readonly bytes: number
  /** -1: no limit. */
  readonly maxBytes: number
  readonly messages: number
  /** `new`: refuses messages when full (a work stream); `old`: drops its oldest. */
  readonly discard: string
  /** True while a publish would be refused. */
  readonly full: boolean
  /** Durable consumers whose unprocessed messages kept the last trim from freeing more (a driver that is down, say). */
  readonly heldBy?: readonly string[]
}

export interface StreamSpaceOptions {
  /** How often the streams' fill is read (and work streams trimmed). @default 2000 */
  readonly checkIntervalMs?: number
  /** Share of a work stream's limit past which what every consumer processed is trimmed. @default 0.8 */
  readonly trimAt?: number
  /** Share of the limit a trim brings the stream back to, when consumers allow. @default 0.6 */
  readonly trimTo?: number
  readonly logger?: Logger
}

interface Followed {
  bytes: number
  maxBytes: number
  messages: number
  discard: string
  /** Set by a refused publish, cleared when a read shows room again. */
  refused: boolean
  heldBy?: readonly string[]
}

/** Room a write needs in the events stream beyond what it stores: its event, at most (a record is ≤ 1 MiB). */
const WRITE_HEADROOM_BYTES = 1024 * 1024

const progressOf = (info: ConsumerInfo): ConsumerProgress => ({
  name: info.name,
  filter: info.config.filter_subject || undefined,
  ackFloor: info.ack_floor.stream_seq,
  delivered: info.delivered.stream_seq,
  pending: info.num_pending,
  ackPending: info.num_ack_pending,
})

/**
 * Follows how full the streams are and keeps the work streams (which refuse new messages when
 * full) from filling with work already done: past `trimAt` of a limit it removes the oldest
 * messages every durable consumer has processed, as discard-old would, but never one still owed.
 * Writers ask `assertRoom` before committing something whose event would not fit.
 */
export class StreamSpace {
  readonly #jsm: JetStreamManager
  readonly #intervalMs: number
  readonly #trimAt: number
  readonly #trimTo: number
  readonly #logger: Logger | undefined
  readonly #followed = new Map<string, Followed>()
  readonly #stopObserving: () => void
  #timer: NodeJS.Timeout | undefined
  #checking: Promise<void> | undefined
  #closed = false
  #failing = false

  constructor(jsm: JetStreamManager, publisher: StreamPublisher, options: StreamSpaceOptions = {}) {
    this.#jsm = jsm
    this.#intervalMs = options.checkIntervalMs ?? 2000
    this.#trimAt = options.trimAt ?? 0.8
    this.#trimTo = options.trimTo ?? 0.6
    this.#logger = options.logger
    this.#stopObserving = publisher.observe({
      stored: (stream, bytes) => {
        const followed = this.#followed.get(stream)
        if (followed) followed.bytes += bytes
      },
      refused: (stream) => {
        const followed = this.#followed.get(stream)
        if (followed) followed.refused = true
        void this.check()
      },
    })
  }

  start(): void {
    const tick = (): void => {
      if (this.#closed) return
      this.#timer = setTimeout(() => void this.check().finally(tick), this.#intervalMs)
      this.#timer.unref()
    }
    void this.check().finally(tick)
  }

  /** Each stream's fill as last read (plus what was stored since). */
  usage(): Record<string, StreamUsage> {
    return Object.fromEntries(
      [...this.#followed].map(([name, f]) => [
        name,
        {
          bytes: f.bytes,
          maxBytes: f.maxBytes,
          messages: f.messages,
          discard: f.discard,
          full: this.#isFull(f, 0),
          ...(f.heldBy && f.heldBy.length > 0 ? { heldBy: f.heldBy } : {}),
        },
      ]),
    )
  }

  /** Throws `StreamFullError` (a 503) when the stream has no room for a message of about `bytes`. */
  assertRoom(stream: string, bytes = WRITE_HEADROOM_BYTES): void {
    const followed = this.#followed.get(stream)
    if (followed && this.#isFull(followed, bytes))
      throw new StreamFullError(stream, `${followed.bytes} of ${followed.maxBytes} bytes used`)
  }

  #isFull(f: Followed, bytes: number): boolean {
    if (f.discard !== 'new' || f.maxBytes <= 0) return false
    // A small limit (tests) leaves a proportionate headroom.
    return f.refused || f.bytes + Math.min(bytes, f.maxBytes * 0.05) >= f.maxBytes
  }

  /** Reads every stream's fill, then trims the work streams that need it; one check at a time. */
  check(): Promise<void> {
    this.#checking ??= this.#checkOnce()
      .then(() => {
        this.#failing = false
      })
      .catch((error: unknown) => {
        // Once per outage: while NATS is away every check fails the same way.
        if (!this.#failing && !this.#closed) this.#logger?.warn('stream space check failed', { error: String(error) })
        this.#failing = true
      })
      .finally(() => {
        this.#checking = undefined
      })
    return this.#checking
  }

  async #checkOnce(): Promise<void> {
    for (const name of [streams.events, streams.inbox, streams.logs]) {
      const info = await this.#jsm.streams.info(name)
      let followed: Followed = {
        bytes: info.state.bytes,
        maxBytes: info.config.max_bytes,
        messages: info.state.messages,
        discard: info.config.discard,
        refused: false,
      }
      if (WORK_STREAMS.includes(name) && followed.maxBytes > 0 && followed.bytes >= this.#trimAt * followed.maxBytes) {
        const heldBy = await this.#trim(name, { ...info.state, maxBytes: followed.maxBytes })
        const after = await this.#jsm.streams.info(name)
        followed = { ...followed, bytes: after.state.bytes, messages: after.state.messages, heldBy }
      }
      // A refused publish stays refused until there is room for it again.
      const before = this.#followed.get(name)
      followed.refused = before?.refused === true && followed.bytes >= before.bytes
      this.#followed.set(name, followed)
    }
  }

  async #trim(
    name: string,
    state: { first_seq: number; last_seq: number; bytes: number; maxBytes: number },
  ): Promise<string[]> {
    const progress: ConsumerProgress[] = []
    for await (const info of await this.#jsm.consumers.list(name))
      if (info.config.durable_name) progress.push(progressOf(info))
    const cut = cutFor(
      { firstSeq: state.first_seq, lastSeq: state.last_seq, bytes: state.bytes, maxBytes: state.maxBytes },
      this.#trimTo,
    )
    const classes = streamClasses[name] ?? { shared: [], owned: [] }
    let purged = 0
    for (const purge of planTrim(cut, progress, classes)) {
      if (purge.below <= state.first_seq) continue
      const response = await this.#jsm.streams.purge(name, { filter: purge.filter, seq: purge.below })
      purged += response.purged
    }
    if (purged > 0) this.#logger?.info('trimmed processed messages from a full stream', { stream: name, purged })
    return progress.filter((c) => firstOwed(c) < cut).map((c) => c.name ?? '')
  }

  async close(): Promise<void> {
    this.#closed = true
    clearTimeout(this.#timer)
    this.#stopObserving()
    await this.#checking
  }
}
