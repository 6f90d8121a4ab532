/** What a socket outbox needs of a uWS WebSocket. */
export interface SendingSocket {
  send(message: string, isBinary?: boolean): number
  getBufferedAmount(): number
}

export interface SocketOutboxOptions {
  /** Bytes that may wait here (beyond what uWS and TCP hold) before the socket is given up on. */
  readonly maxQueuedBytes: number
  /**
   * Called once (in a microtask, so what is being delivered right now completes first) when more
   * than `maxQueuedBytes` wait: close the socket, saying where to resume.
   */
  readonly overflow: () => void
}

/** A frame to send, or (without text) a mark that runs once every frame before it was handed to uWS. */
interface Frame {
  readonly text: string | undefined
  readonly sent: (() => void) | undefined
}

/** uWS is handed more only while it buffers less than this; the rest waits here, counted. */
const HANDED_BYTES = 512 * 1024
/** A producer that can wait (a watch, a list, a log) is told to stop once this much (or a quarter of the maximum) waits here. */
const ROOM_BYTES = 1024 * 1024

/**
 * The frames of one WebSocket, in order, never more than the client can take: uWS gets a frame
 * only while its own buffer is small (so it never drops one), the rest waits here until `drain`.
 * Producers that can pause ask `hasRoom` and `whenRoom`; the others (log lines) are bounded by
 * `maxQueuedBytes`, past which the socket is given up on.
 */
export class SocketOutbox {
  readonly #socket: SendingSocket
  readonly #options: SocketOutboxOptions
  readonly #queue: Frame[] = []
  #head = 0
  #queuedBytes = 0
  #closed = false
  #overflowing = false
  #waiters: (() => void)[] = []
  readonly #roomBytes: number

  constructor(socket: SendingSocket, options: SocketOutboxOptions) {
    this.#socket = socket
    this.#options = options
    this.#roomBytes = Math.min(ROOM_BYTES, options.maxQueuedBytes / 4)
  }

  get queuedBytes(): number {
    return this.#queuedBytes
  }

  get closed(): boolean {
    return this.#closed
  }

  /** True while a producer that can wait may send more. */
  get hasRoom(): boolean {
    return !this.#closed && this.#queuedBytes < this.#roomBytes
  }

  /** Resolves once a producer that can wait may send more (or the socket closed: check `closed`). */
  whenRoom(): Promise<void> {
    if (this.hasRoom || this.#closed) return Promise.resolve()
    return new Promise((resolve) => this.#waiters.push(resolve))
  }

  /** Queues a frame; `sent` runs when uWS has it (it then reaches the client unless the connection breaks). */
  send(text: string, sent?: () => void): void {
    if (this.#closed) return
    if (this.#head === this.#queue.length && this.#socket.getBufferedAmount() < HANDED_BYTES) {
      this.#socket.send(text, false)
      sent?.()
      return
    }
    this.#queue.push({ text, sent })
    this.#queuedBytes += text.length
    if (this.#queuedBytes > this.#options.maxQueuedBytes && !this.#overflowing) {
      this.#overflowing = true
      queueMicrotask(() => {
        if (!this.#closed) this.#options.overflow()
      })
    }
  }

  /** Runs `reached` once every frame sent before has been handed to uWS. */
  mark(reached: () => void): void {
    if (this.#closed) return
    if (this.#head === this.#queue.length) reached()
    else this.#queue.push({ text: undefined, sent: reached })
  }

  /** Hands waiting frames to uWS, however much it buffers, while `more()` says so (a last flush before closing). */
  flushWhile(more: () => boolean): void {
    while (!this.#closed && this.#head < this.#queue.length && more()) this.#handNext()
  }

  /** Hands waiting frames to uWS while it has room: call it from the socket's `drain` handler. */
  drain(): void {
    while (!this.#closed && this.#head < this.#queue.length && this.#socket.getBufferedAmount() < HANDED_BYTES)
      this.#handNext()
    if (this.#head === this.#queue.length) {
      this.#queue.length = 0
      this.#head = 0
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head)
      this.#head = 0
    }
    if (this.hasRoom) this.#wake()
  }

  /** Drops what waits; nothing is sent any more. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#queue.length = 0
    this.#head = 0
    this.#queuedBytes = 0
    this.#wake()
  }

  #handNext(): void {
    const frame = this.#queue[this.#head]!
    this.#queue[this.#head++] = undefined as never
    if (frame.text !== undefined) {
      this.#queuedBytes -= frame.text.length
      this.#socket.send(frame.text, false)
    }
    frame.sent?.()
  }

  #wake(): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const wake of waiters) wake()
  }
}
