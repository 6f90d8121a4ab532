import type { JsMsg } from '@nats-io/jetstream'
import type { ConveyorEvent } from '../../definitions/objects.ts'

/** The event a message carries; an unreadable one is terminated (no redelivery can fix it) and gives undefined. */
export function eventOf(message: JsMsg): ConveyorEvent | undefined {
  try {
    return message.json<ConveyorEvent>()
  } catch {
    message.term()
    return undefined
  }
}
