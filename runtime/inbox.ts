import { randomUUID } from 'node:crypto'
import type { NatsConnection, Subscription } from '@nats-io/transport-node'
import type { StreamAck, StreamPublisher } from './stream-publisher.ts'
import { headers, subjects } from './keys.ts'
import type { ActorEvent } from './actor-record.ts'

/** What an actor host answers to an event: an HTTP status and a body (problem+json when not 200). */
export interface EventReply {
  readonly status: number
  readonly body: Record<string, unknown>
}

/**
 * Sends an event to a resource's actor through its JetStream inbox. The message id derives from
 * the event id (and the incarnation), so a retry inside the duplicate window is dropped by
 * JetStream. `incarnation` is the resource's uid the sender saw: the actor refuses the event if
 * the resource was deleted and created again meanwhile.
 */
export async function sendToActor(
  publisher: StreamPublisher,
  type: string,
  name: string,
  event: ActorEvent,
  options: SendOptions = {},
): Promise<StreamAck> {
  const { replyTo, incarnation } = options
  const eventHeaders: Record<string, string> = {
    ...(replyTo ? { [headers.replyTo]: replyTo } : {}),
    ...(incarnation ? { [headers.incarnation]: incarnation } : {}),
  }
  return await publisher.publish(subjects.inbox(type, name), JSON.stringify(event), {
    msgID:
      options.msgID ?? (incarnation ? `${type}.${name}.${incarnation}.${event.id}` : `${type}.${name}.${event.id}`),
    ...(Object.keys(eventHeaders).length > 0 ? { headers: eventHeaders } : {}),
  })
}

export interface SendOptions {
  /** Where the actor's host publishes its answer (`ReplyInbox.expect`). */
  readonly replyTo?: string | undefined
  /** The resource uid the sender saw. */
  readonly incarnation?: string | undefined
  /** JetStream's message id, when the default (from the event id) must not be deduplicated. */
  readonly msgID?: string
}

/** One subscription per process for the answers of actor hosts, matched to waiting requests by token. */
export class ReplyInbox {
  readonly #prefix = `_INBOX.conveyor.${randomUUID().replace(/-/g, '')}`
  readonly #subscription: Subscription
  readonly #waiting = new Map<string, (reply: EventReply | undefined) => void>()

  constructor(nats: NatsConnection) {
    this.#subscription = nats.subscribe(`${this.#prefix}.*`, {
      callback: (error, message) => {
        if (error) return
        const token = message.subject.slice(this.#prefix.length + 1)
        const resolve = this.#waiting.get(token)
        if (!resolve) return
        this.#waiting.delete(token)
        try {
          resolve(message.json<EventReply>())
        } catch {
          resolve({ status: 502, body: { detail: 'unreadable reply from the actor host' } })
        }
      },
    })
  }

  /** A subject to put in `Conveyor-Reply-To`, and the reply (undefined after `timeoutMs`). */
  expect(timeoutMs: number): { subject: string; reply: Promise<EventReply | undefined>; cancel(): void } {
    const token = randomUUID().replace(/-/g, '')
    let timer: NodeJS.Timeout | undefined
    const reply = new Promise<EventReply | undefined>((resolve) => {
      this.#waiting.set(token, resolve)
      timer = setTimeout(() => {
        this.#waiting.delete(token)
        resolve(undefined)
      }, timeoutMs)
    }).finally(() => clearTimeout(timer))
    return { subject: `${this.#prefix}.${token}`, reply, cancel: () => this.#waiting.delete(token) }
  }

  close(): void {
    this.#subscription.unsubscribe()
    for (const resolve of this.#waiting.values()) resolve(undefined)
    this.#waiting.clear()
  }
}
