import type { JsMsg } from '@nats-io/jetstream'

/** One delivery of a piece of work to this instance: a JetStream message, or an item found by catch-up. */
export interface Delivery {
  /** 1 on the first delivery, +1 per redelivery. */
  readonly attempt: number
  /** Keeps the delivery from being handed to another instance meanwhile. */
  working(): void
  /** Done with it for good (confirmed by the server for a message). */
  ack(): Promise<void>
  /** Hand it back, to come again after `delayMs`. */
  retry(delayMs: number): void
}

/** A JetStream message as a delivery. */
export function messageDelivery(message: JsMsg): Delivery {
  return {
    attempt: message.info.deliveryCount,
    working: () => message.working(),
    ack: async () => void (await message.ackAck()),
    retry: (delayMs) => message.nak(delayMs),
  }
}

/**
 * Waits for `work` (a claim or a report the actor has yet to answer, through any outage) while
 * telling JetStream every `everyMs` that the delivery is still being worked on: waiting on
 * infrastructure never lets the message be redelivered, so it never counts as a delivery.
 */
export async function keepingAlive<T>(delivery: Delivery, everyMs: number, work: Promise<T>): Promise<T> {
  const timer = setInterval(() => delivery.working(), Math.max(200, everyMs))
  try {
    return await work
  } finally {
    clearInterval(timer)
  }
}
