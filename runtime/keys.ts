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
  version: (type: string, name: string, version: number): string =>
    `${ROOT}/versions/${type}/${name}/${String(version).padStart(10, '0')}`,
  versions: (type: string, name: string): string => `${ROOT}/versions/${type}/${name}/`,
  actor: (type: string, name: string): string => `${ROOT}/actors/${partitionToken(type, name)}/${type}/${name}`,
  actorsOfPartition: (partition: number): string => `${ROOT}/actors/${partitionName(partition)}/`,
  actorsOfType: (partition: number, type: string): string => `${ROOT}/actors/${partitionName(partition)}/${type}/`,
  /** Durable timers, ordered by due time inside a partition so a range read finds the next ones. */
  timer: (type: string, name: string, dueAt: number, id: string): string =>
    `${ROOT}/timers/${partitionToken(type, name)}/${String(dueAt).padStart(15, '0')}/${type}/${name}/${encodeURIComponent(id)}`,
  timersOfPartition: (partition: number): string => `${ROOT}/timers/${partitionName(partition)}/`,
  timers: (): string => `${ROOT}/timers/`,
  lifecycle: (id: string): string => `${ROOT}/lifecycles/${id}`,
  /** Events an actor could not store (a write etcd refuses), kept aside to be listed and sent again. */
  parkedEvent: (type: string, name: string, seq: number): string =>
    `${ROOT}/parked/${type}/${name}/${String(seq).padStart(15, '0')}`,
  parkedEvents: (type: string, name: string): string => `${ROOT}/parked/${type}/${name}/`,
  worker: (id: string): string => `${ROOT}/workers/${id}`,
  workers: (): string => `${ROOT}/workers/`,
  partitionClaim: (partition: number): string => `${ROOT}/partitions/${partitionName(partition)}`,
  partitionClaims: (): string => `${ROOT}/partitions/`,
  outbox: (id: string): string => `${ROOT}/outbox/${id}`,
  outboxes: (): string => `${ROOT}/outbox/`,
  /** The current run of a resource, by run id (`{type, name}`): how the gateway knows a run with no log lines yet exists. */
  run: (runid: string): string => `${ROOT}/runs/${runid}`,
  pipeline: (name: string): string => `${ROOT}/pipelines/${name}`,
  pipelines: (): string => `${ROOT}/pipelines/`,
  /** API tokens by id: role, scope and the hash of the secret (never the secret). */
  token: (id: string): string => `${ROOT}/tokens/${id}`,
  tokens: (): string => `${ROOT}/tokens/`,
  /** NATS users of driver identities, per driver and token (a bcrypt hash, never the password). */
  natsUser: (driver: string, tokenId: string): string => `${ROOT}/nats-users/${driver}/${tokenId}`,
  natsUsers: (): string => `${ROOT}/nats-users/`,
  /** The etcd revision of `natsUsers()` the local NATS servers last loaded (written by their supervisor). */
  natsUsersApplied: (): string => `${ROOT}/nats-users-applied`,
  /** Written and read by `connectServers` to check that etcd answers. */
  ping: (): string => `${ROOT}/ping`,
} as const

/** `/conveyor/actors/pNN/{type}/{name}` back into its parts. */
export function parseActorKey(key: string): { type: string; name: string } | undefined {
  const parts = key.slice(ROOT.length + '/actors/'.length).split('/')
  if (parts.length !== 3) return undefined
  return { type: parts[1]!, name: parts[2]! }
}

/** `/conveyor/timers/pNN/{dueAt}/{type}/{name}/{id}` back into its parts. */
export function parseTimerKey(
  key: string,
): { partition: number; dueAt: number; type: string; name: string; id: string } | undefined {
  const parts = key.slice(keys.timers().length).split('/')
  if (parts.length !== 5) return undefined
  const [partition, due, type, name, id] = parts as [string, string, string, string, string]
  return { partition: Number(partition.slice(1)), dueAt: Number(due), type, name, id: decodeURIComponent(id) }
}

/** Durable JetStream consumer names. */
export const consumers = {
  /** Resource changes for one driver, shared by all its instances. */
  driverChanges: (driver: string): string => `driver_${driver}`,
  /** Pipeline steps for one driver, shared by all its instances. */
  driverSteps: (driver: string): string => `driver_${driver}_steps`,
  /** A partition's inbox, per owner (its claim's fencing token): `actors_pNN_{token}`. */
  partitionPrefix: (partition: number): string => `actors_${partitionName(partition)}_`,
  partition: (partition: number, token: number): string => `actors_${partitionName(partition)}_${token}`,
  /** One of a driver's replay consumers (see `runtime/driver-access.ts`). */
  driverReplay: (driver: string, slot: number): string => `driver_${driver}_replay_${slot}`,
} as const

/** NATS key-value buckets (JetStream streams `KV_{bucket}`). */
export const buckets = {
  /** Live driver instances, key `{driver}.{instance}`; entries expire unless renewed. */
  driverInstances: 'conveyor-driver-instances',
  /** Every driver ever seen, key `{driver}`. */
  drivers: 'conveyor-drivers',
  /** Replays, key `{id}`. */
  replays: 'conveyor-replays',
  /** Events of a replay each driver instance handled, key `{id}.{instance}`: the progress is their sum. */
  replayCounts: 'conveyor-replay-counts',
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
  resource: (type: string, name: string, kind: 'created' | 'updated' | 'deleted'): string =>
    `conveyor.ev.resource.${partitionToken(type, name)}.${type}.${name}.${kind}`,
  /** What happened to a resource afterwards: transitions, driver and step results, run ends. */
  outcome: (type: string, name: string, kind: string): string =>
    `conveyor.ev.outcome.${partitionToken(type, name)}.${type}.${name}.${kindToken(kind)}`,
  /** A pipeline step dispatched to a driver (consumed by that driver's step consumer). */
  step: (type: string, name: string, driver: string): string =>
    `conveyor.ev.step.${partitionToken(type, name)}.${type}.${name}.${driver}`,
  /** A running step the driver must abort (cancel, timeout, run failed); every instance listens. */
  cancel: (type: string, name: string, driver: string): string =>
    `conveyor.ev.cancel.${partitionToken(type, name)}.${type}.${name}.${driver}`,
  definition: (name: string): string => `conveyor.ev.definition.${name}`,
  pipeline: (name: string): string => `conveyor.ev.pipeline.${name}`,
  /** Every event of one resource, in order. */
  history: (type: string, name: string): string => `conveyor.ev.*.${partitionToken(type, name)}.${type}.${name}.*`,
  /** Every event of every resource of one type (a replay's range). */
  historyOfType: (type: string): string => `conveyor.ev.*.*.${type}.*.*`,
  /** Every per-resource event. */
  allHistory: (): string => 'conveyor.ev.*.*.*.*.*',
  /** Resource changes of one type, for a driver's consumer. */
  resourceChangesOfType: (type: string): string => `conveyor.ev.resource.*.${type}.*.*`,
  stepsOfDriver: (driver: string): string => `conveyor.ev.step.*.*.*.${driver}`,
  stepsOfDriverAndType: (driver: string, type: string): string => `conveyor.ev.step.*.${type}.*.${driver}`,
  cancelsOfDriver: (driver: string): string => `conveyor.ev.cancel.*.*.*.${driver}`,
  /** Events sent to a resource's actor (consumed by the partition's owner). */
  inbox: (type: string, name: string): string => `conveyor.in.${partitionToken(type, name)}.${type}.${name}`,
  inboxOfPartition: (partition: number): string => `conveyor.in.${partitionName(partition)}.>`,
  allInbox: (): string => 'conveyor.in.>',
  /** Every run end, for drivers that keep per-run state (a workspace). */
  allRunEnds: (): string => 'conveyor.ev.outcome.*.*.*.run-finished',
  runEndsOfType: (type: string): string => `conveyor.ev.outcome.*.${type}.*.run-finished`,
  cancelsOfDriverAndType: (driver: string, type: string): string => `conveyor.ev.cancel.*.${type}.*.${driver}`,
  /**
   * Claims, renewals and reports of one driver for a resource's actor (core NATS request/reply),
   * answered by its partition's owner. The driver's name is part of the subject, so a driver's
   * NATS permissions can allow its own requests only; the owner answers 403 to a request about
   * another driver's work.
   */
  work: (type: string, name: string, driver: string): string =>
    `conveyor.work.${partitionToken(type, name)}.${type}.${name}.${driver}`,
  workOfPartition: (partition: number): string => `conveyor.work.${partitionName(partition)}.>`,
  /** An actor record the gateway just wrote (core NATS, best effort: `{revision}\n{record}`), so its host need not read it back. */
  actorWritten: (type: string, name: string): string =>
    `conveyor.actor-written.${partitionToken(type, name)}.${type}.${name}`,
  actorWrittenOfPartition: (partition: number): string => `conveyor.actor-written.${partitionName(partition)}.>`,
  /** One driver's catch-up requests for one type in a partition (core NATS request/reply), answered by its owner. */
  sync: (partition: number, type: string, driver: string): string =>
    `conveyor.sync.${partitionName(partition)}.${type}.${driver}`,
  syncOfPartition: (partition: number): string => `conveyor.sync.${partitionName(partition)}.*.*`,
  log: (driver: string, runid: string): string => `conveyor.logs.${driver}.${runid}`,
  allLogs: (): string => 'conveyor.logs.>',
  /** Every event (the events stream's one subject space, so any filter above is a subset of it). */
  allEvents: (): string => 'conveyor.ev.>',
  allResourceChanges: (): string => 'conveyor.ev.resource.>',
} as const

/**
 * Filters that split a work stream by what its messages are, for trimming it (`StreamSpace`):
 * `shared` classes may lose what every durable consumer reading them has processed; `owned`
 * classes only what a durable consumer of exactly that part processed (a partition's inbox with
 * no worker yet, a step for a driver that never started: nobody has taken those, so they stay).
 */
export const streamClasses: Readonly<
  Record<string, { readonly shared: readonly string[]; readonly owned: readonly string[] }>
> = {
  [streams.events]: {
    shared: ['resource', 'outcome', 'cancel', 'definition', 'pipeline'].map((c) => `conveyor.ev.${c}.>`),
    owned: ['conveyor.ev.step.>'],
  },
  [streams.inbox]: { shared: [], owned: Array.from({ length: PARTITIONS }, (_, p) => subjects.inboxOfPartition(p)) },
}

/** The log "driver" whose end marker ends a whole pipeline run (not a valid driver name, so no clash). */
export const RUN_LOG = '_run'

/** `conveyor.in.pNN.{type}.{name}` back into the resource it addresses. */
export function parseInboxSubject(subject: string): { type: string; name: string } | undefined {
  const parts = subject.split('.')
  if (parts.length !== 5 || parts[0] !== 'conveyor' || parts[1] !== 'in') return undefined
  return { type: parts[3]!, name: parts[4]! }
}

/** `conveyor.work.pNN.{type}.{name}.{driver}` back into the resource it addresses and the driver asking. */
export function parseWorkSubject(subject: string): { type: string; name: string; driver: string } | undefined {
  const parts = subject.split('.')
  if (parts.length !== 6 || parts[0] !== 'conveyor' || parts[1] !== 'work') return undefined
  return { type: parts[3]!, name: parts[4]!, driver: parts[5]! }
}

/** `conveyor.sync.pNN.{type}.{driver}` back into its parts. */
export function parseSyncSubject(subject: string): { type: string; driver: string } | undefined {
  const parts = subject.split('.')
  if (parts.length !== 5 || parts[0] !== 'conveyor' || parts[1] !== 'sync') return undefined
  return { type: parts[3]!, driver: parts[4]! }
}

/** `conveyor.logs.{driver}.{runid}` back into its parts. */
export function parseLogSubject(subject: string): { driver: string; runid: string } | undefined {
  const parts = subject.split('.')
  if (parts.length !== 4 || parts[0] !== 'conveyor' || parts[1] !== 'logs') return undefined
  return { driver: parts[2]!, runid: parts[3]! }
}

export const headers = {
  kind: 'Conveyor-Kind',
  logEnd: 'Conveyor-Log-End',
  logStream: 'Conveyor-Log-Stream',
  replyTo: 'Conveyor-Reply-To',
  /** The resource uid an inbox event was sent to. */
  incarnation: 'Conveyor-Incarnation',
} as const
