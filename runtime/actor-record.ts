import type { PipelineRun, StepPlan } from '../definitions/pipeline.ts'
import type { DriverWork } from '../definitions/work.ts'
import type { OutboxMessage } from './outbox.ts'

/** What etcd holds for one resource's actor, beside the resource: `keys.actor(type, name)`. */
export interface ActorRecord {
  /** uid of the resource incarnation this actor belongs to. */
  readonly uid: string
  readonly type: string
  readonly name: string
  readonly runid: string
  /** Id of the lifecycle (machine) in `keys.lifecycle(id)`. */
  readonly lifecycle: string
  /** The state as a string (`running`, `build.compiling`), kept so readers need no machine. */
  readonly state: string
  /** XState persisted snapshot. */
  readonly snapshot: PersistedSnapshot
  /** Events applied so far in this run. */
  readonly seq: number
  /** Stream sequence of the last inbox message applied: a redelivery at or below it is skipped. */
  readonly inboxSeq: number
  /** Ids of recently applied events, so a client retry outside JetStream's duplicate window is still recognised. */
  readonly recentIds: readonly string[]
  /** Pending durable timers (`after` delays). */
  readonly timers: readonly DurableTimer[]
  readonly updatedAt: string
  /** The pipeline run, for a resource created with `pipeline`. */
  readonly run?: PipelineRun
  /** Per driver: its claim on, and outcome of, this resource's work (resources without a pipeline). */
  readonly drivers?: Readonly<Record<string, DriverWork>>
  /** Set once the resource is deleted: the record stays as a tombstone so its deletion is handled once per driver. */
  readonly deletedAt?: string
  /** Set when an event's result could not be stored (etcd refused the write): that event is parked, the rest go on. */
  readonly stuck?: ActorStuck
}

/** Why an actor has events kept aside, and how many (`GET …/actor/parked` lists them, `POST …/actor/resume` sends them again). */
export interface ActorStuck {
  readonly reason: string
  readonly since: string
  readonly parked: number
}

/** The internal event `POST …/actor/resume` sends once the parked events are back in the inbox: it clears `stuck`. */
export const ACTOR_RESUME = 'conveyor.actor.resume'

/** One event kept aside: what it was and why etcd refused its result. */
export interface ParkedEvent {
  readonly seq: number
  readonly event: ActorEvent
  readonly reason: string
  readonly parkedAt: string
}

export interface PersistedSnapshot {
  readonly status: string
  readonly value: unknown
  readonly context: Record<string, unknown>
  readonly [key: string]: unknown
}

export interface DurableTimer {
  /** XState's send id (`xstate.after.<ms>.<state>`): what a cancel action names. */
  readonly id: string
  readonly dueAt: number
  readonly event: { readonly type: string; readonly [key: string]: unknown }
}

/** An event sent to an actor. `id` makes it idempotent. */
export interface ActorEvent {
  readonly type: string
  readonly id: string
  readonly [key: string]: unknown
}

/** Computes a resource's first actor record (and its timers) when the resource is created or replaced. */
export interface ActorInitializer {
  /** The first record; with a pipeline, the run starts: `messages` dispatch its first steps. */
  initial(input: {
    uid: string
    type: string
    name: string
    runid: string
    lifecycle: Record<string, unknown> | undefined
    pipeline?: { readonly name: string; readonly plan: readonly StepPlan[] }
    now: number
  }): { record: ActorRecord; lifecycleId: string; lifecycle: Record<string, unknown>; messages: OutboxMessage[] }
  /** Messages that stop what a record's run still has going, when the resource is replaced or deleted. */
  retire(record: ActorRecord, reason: string, now: number): OutboxMessage[]
  /** The record a deleted resource leaves behind until its drivers handled the deletion (it expires by a durable timer). */
  tombstone(record: ActorRecord, now: number): ActorRecord
}

export const RECENT_IDS = 16

/** The durable timer event that removes a deleted resource's tombstone. */
export const TOMBSTONE_EXPIRE = 'conveyor.tombstone.expire'
