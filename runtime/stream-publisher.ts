import { randomUUID } from 'node:crypto'
import { headers as natsHeaders, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node'
import { ConveyorError } from './errors.ts'

/** What JetStream answers when it stored (or deduplicated) a message. */
export interface StreamAck {
  readonly stream: string
  readonly seq: number
  readonly duplicate: boolean
}

export interface StreamPublishOptions {
  /** JetStream's deduplication id (`Nats-Msg-Id`). */
  readonly msgID?: string
  /** Further headers, name → value. */
  readonly headers?: Readonly<Record<string, string>>
}

interface Waiting {
  readonly resolve: (ack: StreamAck) => void
  readonly reject: (error: Error) => void
  readonly sentAt: number
  /** Bytes the message takes in the stream, roughly (subject, headers, payload). */
  readonly bytes: number
}

/** JetStream's "stream store failed" (`maximum bytes exceeded`, `maximum messages exceeded`): a full stream that discards new messages. */
const STORE_FAILED = 10077

/** A stream at its limit refused a message: nothing was stored, so nothing is lost by retrying later. */
export class StreamFullError extends ConveyorError {
  readonly stream: string
  constructor(stream: string, reason: string) {
    super(
      'stream-full',
      `stream ${stream} is full (${reason}): it refuses new messages until its consumers have processed older ones; retry later, or raise its limit (CONVEYOR_EVENTS_MAX_BYTES, CONVEYOR_INBOX_MAX_BYTES)`,
      { kind: 'unavailable' },
    )
    this.name = 'StreamFullError'
    this.stream = stream
  }
}

/** Told about every acknowledged (and every refused) message, to follow how full each stream is. */
export interface PublishObserver {
  stored(stream: string, bytes: number): void
  refused(stream: string): void
}

function failure(name: string, message: string): Error {
  const error = new Error(message)
  error.name = name
  return error
}

/**
 * Publishes to JetStream and waits for the stream's acknowledgement, like `js.publish`, but with
 * one reply subscription and one timeout sweep per connection instead of a request object, a timer
 * and an error per message: the hot paths (outbox, actor inbox) publish thousands per second.
 * Messages sent from one publisher keep their call order on the wire.
 */
export class StreamPublisher {
  readonly #nats: NatsConnection
  readonly #prefix: string
  readonly #subscription: Subscription
  readonly #waiting = new Map<number, Waiting>()
  readonly #timeoutMs: number
  readonly #sweep: NodeJS.Timeout
  readonly #observers = new Set<PublishObserver>()
  #next = 0

  /** `inboxPrefix`: the connection's (a driver identity may subscribe under its own only). */
  constructor(nats: NatsConnection, timeoutMs = 5000, inboxPrefix = '_INBOX') {
    this.#nats = nats
    this.#prefix = `${inboxPrefix}.conveyor-pub.${randomUUID().replace(/-/g, '')}`
    this.#timeoutMs = timeoutMs
    this.#subscription = nats.subscribe(`${this.#prefix}.*`, {
      callback: (error, message) => {
        if (error) return
        const token = Number(message.subject.slice(this.#prefix.length + 1))
        const waiting = this.#waiting.get(token)
        if (!waiting) return
        this.#waiting.delete(token)
        if (message.headers?.code === 503)
          return waiting.reject(failure('NoRespondersError', `no responders: no stream stores ${message.subject}`))
        try {
          const body = message.json<{
            stream?: string
            seq?: number
            duplicate?: boolean
            error?: { code?: number; err_code?: number; description?: string }
          }>()
          if (body.error?.err_code === STORE_FAILED && body.stream) {
            for (const observer of this.#observers) observer.refused(body.stream)
            return waiting.reject(new StreamFullError(body.stream, body.error.description ?? 'store failed'))
          }
          if (body.error || typeof body.seq !== 'number')
            return waiting.reject(
              failure('JetStreamApiError', body.error?.description ?? 'unexpected JetStream publish reply'),
            )
          const stream = body.stream ?? ''
          if (!body.duplicate) for (const observer of this.#observers) observer.stored(stream, waiting.bytes)
          waiting.resolve({ stream, seq: body.seq, duplicate: body.duplicate === true })
        } catch {
          waiting.reject(failure('JetStreamApiError', 'unreadable JetStream publish reply'))
        }
      },
    })
    // Entries are in send order, so the sweep stops at the first one still in time.
    this.#sweep = setInterval(
      () => {
        const expired = Date.now() - this.#timeoutMs
        for (const [token, waiting] of this.#waiting) {
          if (waiting.sentAt > expired) break
          this.#waiting.delete(token)
          waiting.reject(failure('TimeoutError', `timeout: JetStream did not acknowledge within ${this.#timeoutMs} ms`))
        }
      },
      Math.min(500, this.#timeoutMs),
    )
    this.#sweep.unref()
    void nats.closed().then(() => this.close())
  }

  publish(subject: string, payload: string | Uint8Array, options: StreamPublishOptions = {}): Promise<StreamAck> {
    let h: MsgHdrs | undefined
    if (options.msgID !== undefined || options.headers) {
      h = natsHeaders()
      if (options.msgID !== undefined) h.set('Nats-Msg-Id', options.msgID)
      for (const [name, value] of Object.entries(options.headers ?? {})) h.set(name, value)
    }
    const token = this.#next++
    let bytes = subject.length + payload.length + (options.msgID?.length ?? 0)
    for (const [name, value] of Object.entries(options.headers ?? {})) bytes += name.length + value.length + 4
    return new Promise((resolve, reject) => {
      this.#waiting.set(token, { resolve, reject, sentAt: Date.now(), bytes })
      try {
        this.#nats.publish(subject, payload, { reply: `${this.#prefix}.${token}`, ...(h ? { headers: h } : {}) })
      } catch (error) {
        this.#waiting.delete(token)
        reject(error instanceof Error ? error : new Error(String(error)))
      }
    })
  }

  /** Follows what the streams store and refuse through this publisher; returns how to stop. */
  observe(observer: PublishObserver): () => void {
    this.#observers.add(observer)
    return () => this.#observers.delete(observer)
  }

  /** Rejects whatever still waits; later publishes fail with the connection. */
  close(): void {
    clearInterval(this.#sweep)
    if (!this.#subscription.isClosed()) this.#subscription.unsubscribe()
    for (const waiting of this.#waiting.values())
      waiting.reject(failure('ClosedConnectionError', 'connection closed before JetStream acknowledged'))
    this.#waiting.clear()
  }
}
