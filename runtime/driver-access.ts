import { buckets, consumers, streams, subjects } from './keys.ts'
import type { NatsPermissions } from './servers/nats-server.ts'

/** What one driver identity may reach: its name and, when limited, its resource types. */
export interface DriverScope {
  readonly driver: string
  /** Resource types it may serve; undefined: every type. */
  readonly types?: readonly string[] | undefined
}

/** A durable consumer of the events stream that a driver pulls from. */
export interface DriverConsumerSpec {
  readonly name: string
  readonly filter: string
  /** `steps`: pipeline steps (from the stream's start); `changes`: resource changes (from now on; the catch-up finds the rest). */
  readonly serves: 'steps' | 'changes'
}

/** Replays to one driver that may run at once (each pulls from one of the driver's replay consumers). */
export const REPLAY_SLOTS = 4

/** The names of a driver's replay consumers: `driver_{name}_replay_{0…REPLAY_SLOTS-1}`. */
export const replaySlots = (driver: string): string[] =>
  Array.from({ length: REPLAY_SLOTS }, (_, slot) => consumers.driverReplay(driver, slot))

/** Where a driver's request replies arrive: its NATS permissions allow this prefix only. */
export const driverInboxPrefix = (driver: string): string => `_INBOX.driver.${driver}`

function scopeProblem(scope: DriverScope, resources: readonly string[]): string | undefined {
  const outside = scope.types ? resources.filter((type) => !scope.types!.includes(type)) : []
  if (outside.length > 0)
    return `driver ${scope.driver} may serve types ${scope.types!.join(', ')} only, not ${outside.join(', ')}`
  if (scope.types && scope.types.length > 1)
    return `a driver identity limited to several types (${scope.types.join(', ')}) needs one consumer filter per type, which nats-server 2.9 lacks: limit the token to one type, or to none`
  return undefined
}

/**
 * The consumers a driver serving `resources` pulls from within `scope`, or why it may not: its
 * steps (of its scope's type when limited) and, when it serves types, their changes (one filter
 * subject per consumer on nats-server 2.9: one type, or every resource change when the scope
 * allows every type).
 */
export function driverConsumers(scope: DriverScope, resources: readonly string[]): DriverConsumerSpec[] | string {
  const problem = scopeProblem(scope, resources)
  if (problem) return problem
  const only = scope.types?.[0]
  const specs: DriverConsumerSpec[] = [
    {
      name: consumers.driverSteps(scope.driver),
      filter: only ? subjects.stepsOfDriverAndType(scope.driver, only) : subjects.stepsOfDriver(scope.driver),
      serves: 'steps',
    },
  ]
  const types = [...new Set(resources)]
  if (types.length > 0)
    specs.push({
      name: consumers.driverChanges(scope.driver),
      filter: types.length === 1 ? subjects.resourceChangesOfType(types[0]!) : subjects.allResourceChanges(),
      serves: 'changes',
    })
  return specs
}

/** The JetStream API subjects that read and watch a key-value bucket (its stream `KV_{bucket}`). */
function bucketReads(bucket: string): string[] {
  const stream = `KV_${bucket}`
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    // Watches and key listings: an ephemeral ordered consumer, its flow control, its removal.
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.*`,
    `$JS.API.CONSUMER.DELETE.${stream}.*`,
    `$JS.FC.${stream}.>`,
  ]
}

/** Pull, ack and look up one consumer of the events stream. */
function consumerUse(name: string): string[] {
  return [
    `$JS.API.CONSUMER.INFO.${streams.events}.${name}`,
    `$JS.API.CONSUMER.MSG.NEXT.${streams.events}.${name}`,
    `$JS.ACK.${streams.events}.${name}.>`,
  ]
}

/**
 * The NATS permissions of a driver identity: its own consumers (pull, ack; the control plane
 * creates them), its work and catch-up requests, its logs, its registry entries and replay
 * progress, the cancels and run ends of its types, and replies on its own inbox prefix. Nothing
 * else: no other driver's consumers or work, no consumer of its own making, no publish to the
 * events or inbox streams.
 */
export function driverPermissions(scope: DriverScope): NatsPermissions {
  const driver = scope.driver
  const types = scope.types ?? ['*']
  const own = [consumers.driverSteps(driver), consumers.driverChanges(driver), ...replaySlots(driver)]
  return {
    publish: {
      allow: [
        ...types.flatMap((type) => [`conveyor.work.*.${type}.*.${driver}`, `conveyor.sync.*.${type}.${driver}`]),
        `conveyor.logs.${driver}.>`,
        `$KV.${buckets.driverInstances}.${driver}.*`,
        `$KV.${buckets.drivers}.${driver}`,
        `$KV.${buckets.replays}.*`,
        `$KV.${buckets.replayCounts}.*.*`,
        '$JS.API.INFO',
        `$JS.API.STREAM.INFO.${streams.events}`,
        `$JS.API.STREAM.INFO.${streams.logs}`,
        ...own.flatMap(consumerUse),
        ...replaySlots(driver).map((name) => `$JS.API.CONSUMER.DELETE.${streams.events}.${name}`),
        ...[buckets.driverInstances, buckets.drivers, buckets.replays, buckets.replayCounts].flatMap(bucketReads),
      ],
    },
    subscribe: {
      allow: [
        `${driverInboxPrefix(driver)}.>`,
        ...types.flatMap((type) => [
          `conveyor.ev.cancel.*.${type}.*.${driver}`,
          `conveyor.ev.outcome.*.${type}.*.run-finished`,
        ]),
      ],
    },
  }
}
