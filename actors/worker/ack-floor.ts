import type { JsMsg } from '@nats-io/jetstream'

interface Entry {
  readonly seq: number
  readonly message: JsMsg
  done: boolean
}

/**
 * Tracks delivered inbox messages in stream order until everything before them is applied, and
 * acks the highest such message (the consumer's ack policy is `all`: one ack covers every earlier
 * one), coalescing acks that fall in the same turn of the event loop.
 */
export class AckFloor {
  readonly #outstanding: Entry[] = []
  readonly #tracked = new Map<number, Entry>()
  #floor: number
  #pendingAck: JsMsg | undefined

  constructor(floor: number) {
    this.#floor = floor
  }

  /** True when the message was applied already (at or below the floor) or is being applied. */
  seen(seq: number): boolean {
    return seq <= this.#floor || this.#tracked.has(seq)
  }

  track(message: JsMsg): void {
    const entry = { seq: message.seq, message, done: false }
    this.#outstanding.push(entry)
    this.#tracked.set(message.seq, entry)
  }

  /** Marks a message applied; the floor moves past every applied message in a row. */
  done(seq: number): void {
    const entry = this.#tracked.get(seq)
    if (entry) entry.done = true
    let last: JsMsg | undefined
    while (this.#outstanding[0]?.done) {
      const head = this.#outstanding.shift()!
      this.#tracked.delete(head.seq)
      last = head.message
    }
    if (!last) return
    this.#floor = last.seq
    const pending = this.#pendingAck
    this.#pendingAck = last
    if (pending === undefined) {
      setImmediate(() => {
        const message = this.#pendingAck
        this.#pendingAck = undefined
        message?.ack()
      })
    }
  }
}
