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
 *
 * An ack that covers every earlier message is only safe if every delivery arrived: a message the
 * server sent on a connection that died (a NATS node killed) would be acked unseen. `arrived`
 * tells when the consumer's delivery sequence skipped, so the caller takes the inbox again from the
 * floor instead of acking past the hole.
 */
export class AckFloor {
  readonly #outstanding: Entry[] = []
  readonly #tracked = new Map<number, Entry>()
  #floor: number
  #pendingAck: JsMsg | undefined
  /** The consumer's delivery sequence of the last message that arrived (0: none yet from this consumer). */
  #lastDelivery = 0

  constructor(floor: number) {
    this.#floor = floor
  }

  /** The highest stream sequence applied with everything before it. */
  get floor(): number {
    return this.#floor
  }

  /**
   * Records a delivery of the current consumer; false when deliveries before it never arrived.
   */
  arrived(deliverySequence: number): boolean {
    const skipped = this.#lastDelivery > 0 && deliverySequence > this.#lastDelivery + 1
    this.#lastDelivery = Math.max(this.#lastDelivery, deliverySequence)
    return !skipped
  }

  /** A new consumer delivers from now on: its delivery sequence starts at 1. */
  restarted(): void {
    this.#lastDelivery = 0
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
