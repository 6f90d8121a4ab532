/**
 * Every etcd key and NATS subject Conveyor uses, in one place.
 *
 * A partition is derived from `type/name` once; it appears in subjects so that sharding the hot
 * path across several streams later is a deployment change, not a rewrite.
 */

export const PARTITIONS = 64

export function partitionOf(type: string, name: string): number {
  let hash = 0x811c9dc5
  const text = `${type}/${name}`
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash % PARTITIONS
}

export const partitionName = (partition: number): string => `p${String(partition).padStart(2, '0')}`
const partitionToken = (type: string, name: string): string => partitionName(partitionOf(type, name))

const ROOT = '/conveyor'

export const keys = {
  definition: (name: string): string => `${ROOT}/definitions/${name}`,
  definitions: (): string => `${ROOT}/definitions/`,
  resource: (type: string, name: string): string => `${ROOT}/resources/${type}/${name}`,
  resources: (type: string): string => `${ROOT}/resources/${type}/`,
  status: (type: string, name: string): string => `${ROOT}/status/${type}/${name}`,
  statuses: (type: string): string => `${ROOT}/status/${type}/`,
  version: (type: string, name: string, version: number): string => `${ROOT}/versions/${type}/${name}/${String(version).padStart(10, '0')}`,
  versions: (type: string, name: string): string => `${ROOT}/versions/${type}/${name}/`,
  actor: (type: string, name: string): string => `${ROOT}/actors/${partitionToken(type, name)}/${type}/${name}`,
  actorsOfPartition: (partition: number): string => `${ROOT}/actors/${partitionName(partition)}/`,
  /** Durable timers, ordered by due time inside a partition so a range read finds the next ones. */
  timer: (type: string, name: string, dueAt: number, id: string): string =>
    `${ROOT}/timers/${partitionToken(type, name)}/${String(dueAt).padStart(15, '0')}/${type}/${name}/${encodeURIComponent(id)}`,
  timersOfPartition: (partition: number): string => `${ROOT}/timers/${partitionName(partition)}/`,
  timers: (): string => `${ROOT}/timers/`,
  lifecycle: (id: string): string => `${ROOT}/lifecycles/${id}`,
  worker: (id: string): string => `${ROOT}/workers/${id}`,
  workers: (): string => `${ROOT}/workers/`,
  partitionClaim: (partition: number): string => `${ROOT}/partitions/${partitionName(partition)}`,
  partitionClaims: (): string => `${ROOT}/partitions/`,
  outbox: (id: string): string => `${ROOT}/outbox/${id}`,
  outboxes: (): string => `${ROOT}/outbox/`,
  pipeline: (name: string): string => `${ROOT}/pipelines/${name}`,
  pipelines: (): string => `${ROOT}/pipelines/`,
  /** Idempotency record of one pipeline step in one run (executions, and the result once done). */
  stepRun: (type: string, name: string, runid: string, step: string): string => `${ROOT}/stepruns/${type}/${name}/${runid}/${step}`,
  stepRunsOf: (type: string, name: string): string => `${ROOT}/stepruns/${type}/${name}/`,
  replay: (id: string): string => `${ROOT}/replays/${id}`,
  replays: (): string => `${ROOT}/replays/`,
  /** Events of a replay each driver instance has handled: the replay's progress is their sum. */
  replayCount: (id: string, instance: string): string => `${ROOT}/replay-counts/${id}/${instance}`,
  replayCounts: (id: string): string => `${ROOT}/replay-counts/${id}/`,
} as const

export const streams = {
  events: 'CONVEYOR_EVENTS',
  logs: 'CONVEYOR_LOGS',
  inbox: 'CONVEYOR_INBOX',
} as const

/** The last token of an event subject: the event's kind with `.` (a token separator) as `-`. */
const kindToken = (kind: string): string => kind.replace(/\./g, '-')

/**
 * Every per-resource event subject is `conveyor.ev.{class}.{pNN}.{type}.{name}.{detail}`: one
 * filter subject (all nats-server 2.9 allows) then selects a resource's whole history, a type's
 * changes, or the steps of one driver.
 */
export const subjects = {
  /** created / updated / deleted of a resource: what drivers of its type consume. */
  resource: (type: string, name: string, kind: 'created' | 'updated' | 'deleted'): string => `conveyor.ev.resource.${partitionToken(type, name)}.${type}.${name}.${kind}`,
  /** What happened to a resource afterwards: transitions, driver and step results, run ends. */
  outcome: (type: string, name: string, kind: string): string => `conveyor.ev.outcome.${partitionToken(type, name)}.${type}.${name}.${kindToken(kind)}`,
  /** A pipeline step dispatched to a driver (consumed by that driver's step consumer). */
  step: (type: string, name: string, driver: string): string => `conveyor.ev.step.${partitionToken(type, name)}.${type}.${name}.${driver}`,
  /** A running step the driver must abort (cancel, timeout, run failed); every instance listens. */
  cancel: (type: string, name: string, driver: string): string => `conveyor.ev.cancel.${partitionToken(type, name)}.${type}.${name}.${driver}`,
  definition: (name: string): string => `conveyor.ev.definition.${name}`,
  pipeline: (name: string): string => `conveyor.ev.pipeline.${name}`,
  /** Every event of one resource, in order. */
  history: (type: string, name: string): string => `conveyor.ev.*.${partitionToken(type, name)}.${type}.${name}.*`,
  /** Resource changes of one type, for a driver's consumer. */
  resourceChangesOfType: (type: string): string => `conveyor.ev.resource.*.${type}.*.*`,
  stepsOfDriver: (driver: string): string => `conveyor.ev.step.*.*.*.${driver}`,
  cancelsOfDriver: (driver: string): string => `conveyor.ev.cancel.*.*.*.${driver}`,
  /** Events sent to a resource's actor (consumed by the partition's owner). */
  inbox: (type: string, name: string): string => `conveyor.in.${partitionToken(type, name)}.${type}.${name}`,
  inboxOfPartition: (partition: number): string => `conveyor.in.${partitionName(partition)}.>`,
  allInbox: (): string => 'conveyor.in.>',
  log: (driver: string, runid: string): string => `conveyor.logs.${driver}.${runid}`,
  allLogs: (): string => 'conveyor.logs.>',
  /** Every event (the events stream's one subject space, so any filter above is a subset of it). */
  allEvents: (): string => 'conveyor.ev.>',
  allResourceChanges: (): string => 'conveyor.ev.resource.>',
} as const

/** The log "driver" whose end marker ends a whole pipeline run (not a valid driver name, so no clash). */
export const RUN_LOG = '_run'

export const headers = {
  kind: 'Conveyor-Kind',
  logEnd: 'Conveyor-Log-End',
  logStream: 'Conveyor-Log-Stream',
  replyTo: 'Conveyor-Reply-To',
} as const
