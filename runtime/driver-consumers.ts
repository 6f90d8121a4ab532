import { AckPolicy, DeliverPolicy, type JetStreamManager } from '@nats-io/jetstream'
import { nanos } from '@nats-io/transport-node'
import { ConveyorError } from './errors.ts'
import { streams } from './keys.ts'
import type { DriverConsumerSpec } from './driver-access.ts'

/**
 * Creates a driver's durable consumer, or updates one whose filter or ack wait changed. No
 * delivery limit: JetStream would drop the message past it, and a run would never end; the actor
 * counts executions instead, and a driver that gives up reports it (a dead letter).
 */
export async function ensureDriverConsumer(
  jsm: JetStreamManager,
  driver: string,
  spec: DriverConsumerSpec,
  ackWaitMs: number,
): Promise<void> {
  const config = {
    durable_name: spec.name,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(ackWaitMs),
    max_deliver: -1,
    max_ack_pending: 10_000,
    filter_subject: spec.filter,
  }
  const existing = await jsm.consumers.info(streams.events, spec.name).catch(() => undefined)
  if (!existing) {
    // Steps dispatched before the driver first started are still in the stream; resource changes
    // from before are found by the catch-up instead (level-triggered, whatever the retention).
    await jsm.consumers.add(streams.events, {
      ...config,
      deliver_policy: spec.serves === 'steps' ? DeliverPolicy.All : DeliverPolicy.New,
    })
    return
  }
  const current = existing.config
  if (
    current.filter_subject === config.filter_subject &&
    current.ack_wait === config.ack_wait &&
    current.max_deliver === config.max_deliver
  )
    return
  try {
    await jsm.consumers.update(streams.events, spec.name, {
      ack_wait: config.ack_wait,
      max_deliver: config.max_deliver,
      filter_subject: config.filter_subject,
    })
  } catch (error) {
    throw new ConveyorError(
      'driver-consumer-mismatch',
      `driver ${driver} already has a consumer with other settings (filter ${current.filter_subject}, ack wait ${(current.ack_wait ?? 0) / 1e6} ms, max deliver ${current.max_deliver}) and it could not be updated: ${String(error)}. Stop the other instances or delete consumer ${spec.name} of stream ${streams.events}.`,
    )
  }
}
