import { formatWithOptions } from 'node:util'
import type { JetStreamClient } from '@nats-io/jetstream'
import { headers as natsHeaders } from '@nats-io/transport-node'
import { RUN_LOG_LIMIT_ENV, runLogLimits, type RunLogLimits } from '../../runtime/config.ts'
import { subjects } from '../../runtime/keys.ts'
import { encodeLogEnd, encodeLogLine, MAX_LOG_LINE } from '../../runtime/log-lines.ts'

/** Publishes waiting for JetStream's ack at once; the next lines wait in the queue. */
const MAX_IN_FLIGHT = 256
/** Bytes of queued lines past which a producer is told to wait (see `write`). */
const QUEUE_HIGH_BYTES = 1024 * 1024
/** Queued lines past which a producer is told to wait (it goes on once the queue is half as long). */
const QUEUE_HIGH_LINES = 4096

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
 * bounded number of publishes in flight. Past the limits (bytes, lines) the log ends with a
 * truncation marker and later lines are dropped. `end()` waits for every line to be stored and
 * then publishes the end marker, so the marker follows the last line.
 */
export class RunLog {
  readonly #js: JetStreamClient
  readonly #subject: string
  readonly #endId: string
  readonly #pipeline: string | undefined
  readonly #step: string | undefined
  readonly #limits: RunLogLimits
  /** Encoded lines not published yet, oldest first from `#head`. */
  #queue: string[] = []
  #head = 0
  #queuedBytes = 0
  #inFlight = 0
  #bytes = 0
  #lines = 0
  #truncated = false
  #failed: unknown
  /** Resolves when the queue is below its high marks again; shared by every waiting producer. */
  #room: { promise: Promise<void>; resolve: () => void } | undefined
  #idle: (() => void)[] = []

  constructor(
    js: JetStreamClient,
    driver: string,
    runid: string,
    pipeline?: string,
    step?: string,
    limits: RunLogLimits = runLogLimits(),
  ) {
    this.#js = js
    this.#subject = subjects.log(driver, runid)
    this.#endId = `${driver}:${runid}:end`
    this.#pipeline = pipeline
    this.#step = step
    this.#limits = limits
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
    const message = formatWithOptions({ colors: false, depth: 4 }, ...args)
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

  /** Resolves once every line written so far is stored; throws if one could not be. */
  async flush(): Promise<void> {
    if (this.#inFlight > 0 || this.#head < this.#queue.length)
      await new Promise<void>((resolve) => this.#idle.push(resolve))
    if (this.#failed !== undefined) {
      const error = this.#failed
      this.#failed = undefined
      throw error
    }
  }

  /** Stores what is pending, then the end marker (one per run: a repeat inside the duplicate window is dropped). */
  async end(success: boolean, message: string): Promise<void> {
    await this.flush()
    const end = encodeLogEnd(success, message)
    const h = natsHeaders()
    for (const [name, value] of Object.entries(end.headers)) h.set(name, value)
    await this.#js.publish(this.#subject, end.body, { headers: h, msgID: this.#endId })
  }

  #enqueue(stream: string, message: string): void {
    const body = encodeLogLine({
      message,
      stream,
      ...(this.#pipeline ? { pipeline: this.#pipeline } : {}),
      ...(this.#step ? { step: this.#step } : {}),
    })
    this.#queue.push(body)
    this.#queuedBytes += body.length
    this.#pump()
  }

  /** Starts publishes, oldest first, while fewer than `MAX_IN_FLIGHT` wait for their ack. */
  #pump(): void {
    while (this.#inFlight < MAX_IN_FLIGHT && this.#head < this.#queue.length) {
      const body = this.#queue[this.#head]!
      this.#queue[this.#head++] = ''
      this.#queuedBytes -= body.length
      this.#inFlight++
      this.#js.publish(this.#subject, body).then(
        () => this.#settled(),
        (error: unknown) => {
          this.#failed ??= error
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
    this.#pump()
    if (this.#inFlight === 0 && this.#head === this.#queue.length) {
      const idle = this.#idle
      this.#idle = []
      for (const resolve of idle) resolve()
    }
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
