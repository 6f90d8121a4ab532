import { randomUUID } from 'node:crypto'
import { formatWithOptions } from 'node:util'
import type { JetStreamClient } from '@nats-io/jetstream'
import { headers as natsHeaders } from '@nats-io/transport-node'
import { RUN_LOG_LIMIT_ENV, runLogLimits, type RunLogLimits } from '../../runtime/config.ts'
import { subjects } from '../../runtime/keys.ts'
import { encodeLogEnd, encodeLogLine, MAX_LOG_LINE } from '../../runtime/log-lines.ts'
import { backoffMs } from '../../runtime/backoff.ts'

/** Publishes waiting for JetStream's ack at once; the next lines wait in the queue. */
const MAX_IN_FLIGHT = 256
/** Bytes of queued lines past which a producer is told to wait (see `write`). */
const QUEUE_HIGH_BYTES = 1024 * 1024
/** Queued lines past which a producer is told to wait (it goes on once the queue is half as long). */
const QUEUE_HIGH_LINES = 4096
/** Backoff between rounds of sending again what JetStream did not acknowledge. */
const RESEND_BACKOFF = { baseMs: 250, maxMs: 5000 } as const

/** One message of the log: a line or the end marker, with the id JetStream drops a repeat by. */
interface Entry {
  readonly serial: number
  readonly body: string
  readonly msgID: string
  readonly headers?: Readonly<Record<string, string>>
}

/** Where a log's lines go, and what ends its retries. */
export interface RunLogOptions {
  readonly pipeline?: string
  readonly step?: string
  readonly limits?: RunLogLimits
  /** Aborted when the driver stops: lines not stored by then are given up. */
  readonly signal?: AbortSignal
  /** Applied to every line and to the end message before they leave: masks the resource's secret values (see `masker`). */
  readonly mask?: (text: string) => string
}

/** The line a log ends with once it reached its limit. */
export function truncationMarker(bytes: number, lines: number, limits: RunLogLimits): string {
  return (
    `… log truncated after ${bytes} bytes (${lines} lines): one execution logs at most ${limits.maxBytes} bytes ` +
    `(${RUN_LOG_LIMIT_ENV.maxBytes}) and ${limits.maxLines} lines (${RUN_LOG_LIMIT_ENV.maxLines}); ` +
    `later lines are dropped, the step goes on`
  )
}

/**
 * The log of one execution: every line is published to the log stream in call order, with a
 * bounded number of publishes in flight. A line JetStream did not acknowledge (a server crashed or
 * froze with it) is sent again, in order and with backoff, for as long as it takes; each carries a
 * message id, so one that was stored after all is not stored twice. Past the limits (bytes, lines)
 * the log ends with a truncation marker and later lines are dropped. `end()` waits for every line
 * to be stored and then publishes the end marker, so the marker follows the last line.
 */
export class RunLog {
  readonly #js: JetStreamClient
  readonly #subject: string
  readonly #endId: string
  /** Unique to this execution's log: with the line's serial, the id JetStream deduplicates by. */
  readonly #id = randomUUID()
  readonly #pipeline: string | undefined
  readonly #step: string | undefined
  readonly #limits: RunLogLimits
  readonly #signal: AbortSignal | undefined
  readonly #mask: ((text: string) => string) | undefined
  /** Entries not published yet, oldest first from `#head`. */
  #queue: Entry[] = []
  #head = 0
  #serial = 0
  #queuedBytes = 0
  #inFlight = 0
  #bytes = 0
  #lines = 0
  #truncated = false
  /** Entries JetStream did not acknowledge: while any wait, nothing new is published. */
  #unacknowledged: Entry[] = []
  #resendAttempt = 0
  #resendTimer: NodeJS.Timeout | undefined
  #resending = false
  #failed: unknown
  /** Resolves when the queue is below its high marks again; shared by every waiting producer. */
  #room: { promise: Promise<void>; resolve: () => void } | undefined
  #idle: (() => void)[] = []

  constructor(js: JetStreamClient, driver: string, runid: string, options: RunLogOptions = {}) {
    this.#js = js
    this.#subject = subjects.log(driver, runid)
    this.#endId = `${driver}:${runid}:end`
    this.#pipeline = options.pipeline
    this.#step = options.step
    this.#limits = options.limits ?? runLogLimits()
    this.#signal = options.signal
    this.#mask = options.mask
    this.#signal?.addEventListener('abort', () => this.#giveUp(), { once: true })
  }

  /** The text with the secret values this log masks masked (the text itself without a mask). */
  mask(text: string): string {
    return this.#mask ? this.#mask(text) : text
  }

  /** True once the log reached its limits: later lines are dropped. */
  get truncated(): boolean {
    return this.#truncated
  }

  /**
   * Queues a line. Returns undefined while the queue has room, or a promise to wait for before
   * writing more (a child's stdout pauses until then); a producer that does not wait is bounded
   * by the limits. Lines past the limits are dropped.
   */
  write(stream: string, args: readonly unknown[]): Promise<void> | undefined {
    if (this.#truncated) return undefined
    const message = this.mask(formatWithOptions({ colors: false, depth: 4 }, ...args))
    const size = Buffer.byteLength(message.length > MAX_LOG_LINE ? message.slice(0, MAX_LOG_LINE) : message)
    if (this.#lines + 1 > this.#limits.maxLines || this.#bytes + size > this.#limits.maxBytes) {
      this.#truncated = true
      this.#enqueue('log', truncationMarker(this.#bytes, this.#lines, this.#limits))
    } else {
      this.#lines++
      this.#bytes += size
      this.#enqueue(stream, message)
    }
    return this.#full() ? this.#whenRoom() : undefined
  }

  /** Resolves once every line written so far is stored; throws if the log was given up first. */
  async flush(): Promise<void> {
    if (!this.#drained()) await new Promise<void>((resolve) => this.#idle.push(resolve))
    if (this.#failed !== undefined) throw this.#failed
  }

  /** Stores what is pending, then the end marker (one per run: a repeat inside the duplicate window is dropped). */
  async end(success: boolean, message: string): Promise<void> {
    await this.flush()
    const end = encodeLogEnd(success, this.mask(message))
    this.#push({ serial: ++this.#serial, body: end.body, msgID: this.#endId, headers: end.headers })
    await this.flush()
  }

  #enqueue(stream: string, message: string): void {
    const body = encodeLogLine({
      message,
      stream,
      ...(this.#pipeline ? { pipeline: this.#pipeline } : {}),
      ...(this.#step ? { step: this.#step } : {}),
    })
    const serial = ++this.#serial
    this.#push({ serial, body, msgID: `${this.#id}:${serial}` })
  }

  #push(entry: Entry): void {
    if (this.#failed !== undefined) return
    this.#queue.push(entry)
    this.#queuedBytes += entry.body.length
    this.#pump()
  }

  #publish(entry: Entry): Promise<unknown> {
    if (!entry.headers) return this.#js.publish(this.#subject, entry.body, { msgID: entry.msgID })
    const h = natsHeaders()
    for (const [name, value] of Object.entries(entry.headers)) h.set(name, value)
    return this.#js.publish(this.#subject, entry.body, { headers: h, msgID: entry.msgID })
  }

  /** Starts publishes, oldest first, while fewer than `MAX_IN_FLIGHT` wait for their ack and none waits to be sent again. */
  #pump(): void {
    while (
      this.#inFlight < MAX_IN_FLIGHT &&
      this.#head < this.#queue.length &&
      this.#unacknowledged.length === 0 &&
      this.#failed === undefined
    ) {
      const entry = this.#queue[this.#head]!
      this.#queue[this.#head++] = undefined as never
      this.#queuedBytes -= entry.body.length
      this.#inFlight++
      this.#publish(entry).then(
        () => this.#settled(),
        () => {
          this.#unacknowledged.push(entry)
          this.#settled()
        },
      )
    }
    if (this.#head === this.#queue.length) {
      this.#queue = []
      this.#head = 0
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head)
      this.#head = 0
    }
    if (
      this.#room &&
      this.#queuedBytes < QUEUE_HIGH_BYTES / 2 &&
      this.#queue.length - this.#head < QUEUE_HIGH_LINES / 2
    ) {
      const room = this.#room
      this.#room = undefined
      room.resolve()
    }
  }

  #settled(): void {
    this.#inFlight--
    if (this.#inFlight === 0 && this.#unacknowledged.length > 0 && !this.#resending) this.#scheduleResend()
    this.#pump()
    this.#notifyIdle()
  }

  /** Once every publish in flight has settled, sends the unacknowledged entries again in their order. */
  #scheduleResend(): void {
    if (this.#resendTimer || this.#failed !== undefined) return
    this.#resendTimer = setTimeout(
      () => {
        this.#resendTimer = undefined
        void this.#resend()
      },
      backoffMs(++this.#resendAttempt, RESEND_BACKOFF),
    )
  }

  async #resend(): Promise<void> {
    this.#resending = true
    this.#unacknowledged.sort((a, b) => a.serial - b.serial)
    try {
      while (this.#unacknowledged.length > 0 && this.#failed === undefined) {
        await this.#publish(this.#unacknowledged[0]!)
        this.#unacknowledged.shift()
      }
    } catch {
      return this.#scheduleResend()
    } finally {
      this.#resending = false
    }
    this.#resendAttempt = 0
    this.#pump()
    this.#notifyIdle()
  }

  /** The driver stops: what is not stored yet is dropped, and `flush` says so. */
  #giveUp(): void {
    if (this.#drained()) return
    this.#failed = new Error(
      `the driver stopped before ${this.#unacknowledged.length + this.#inFlight + this.#queue.length - this.#head} log line(s) were stored`,
    )
    clearTimeout(this.#resendTimer)
    this.#resendTimer = undefined
    this.#unacknowledged = []
    this.#queue = []
    this.#head = 0
    this.#queuedBytes = 0
    this.#room?.resolve()
    this.#room = undefined
    const idle = this.#idle
    this.#idle = []
    for (const resolve of idle) resolve()
  }

  #drained(): boolean {
    return this.#inFlight === 0 && this.#head === this.#queue.length && this.#unacknowledged.length === 0
  }

  #notifyIdle(): void {
    if (!this.#drained() || this.#resending) return
    const idle = this.#idle
    this.#idle = []
    for (const resolve of idle) resolve()
  }

  #full(): boolean {
    return this.#queuedBytes >= QUEUE_HIGH_BYTES || this.#queue.length - this.#head >= QUEUE_HIGH_LINES
  }

  #whenRoom(): Promise<void> {
    if (!this.#room) {
      let resolve!: () => void
      const promise = new Promise<void>((r) => (resolve = r))
      this.#room = { promise, resolve }
    }
    return this.#room.promise
  }
}
