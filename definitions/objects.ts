/** The stored shapes of Conveyor's API objects, as the gateway returns them. */
import type { StepDispatch } from './pipeline.ts'

export interface ObjectMetadata {
  readonly uid: string
  /** Per-object counter: 1 on create, +1 on every update (Conveyor's `version`). */
  readonly version: number
  /** etcd mod revision of the object: the optimistic-concurrency token (`If-Match`). */
  readonly revision: number
  readonly createdAt: string
  readonly updatedAt: string
  readonly labels: Readonly<Record<string, string>>
}

export interface ResourceDefinition {
  readonly name: string
  readonly version: string
  readonly description?: string
  readonly schema: Record<string, unknown>
  readonly lifecycle?: Record<string, unknown>
  readonly metadata: ObjectMetadata
}

/** What one driver reported for one run of a resource. */
export interface DriverOutcome {
  readonly success: boolean
  readonly message: string
  readonly data: Record<string, unknown>
  readonly runid: string
  /** The resource revision this outcome answers. */
  readonly forRevision: number
  readonly attempt: number
  readonly finishedAt: string
}

export interface ResourceStatus {
  /** The actor's state (`running`, or `build.compiling` inside a compound state). */
  readonly state: string
  readonly runid: string
  /** The actor's context. */
  readonly context: Record<string, unknown>
  readonly drivers: Readonly<Record<string, DriverOutcome>>
  /** True once the actor reached a final state. */
  readonly done?: boolean
  /** Events the actor applied in this run. */
  readonly seq?: number
  /** The pipeline run, for resources created with `pipeline`. */
  readonly pipeline?: {
    readonly name: string
    readonly status: string
    readonly startedAt: string
    readonly finishedAt?: string
    readonly message?: string
  }
  readonly steps?: readonly Record<string, unknown>[]
}

export interface Resource {
  readonly name: string
  /** The resource definition (type) this resource is an instance of. */
  readonly resource: string
  readonly pipeline?: string
  readonly spec: Record<string, unknown>
  readonly metadata: ObjectMetadata
  readonly status: ResourceStatus
  /** Conveyor compatibility: the current run id (same as `status.runid`). */
  readonly runid: string
  /** Conveyor compatibility: same as `metadata.version`. */
  readonly version: number
}

export const EventKind = {
  created: 'created',
  updated: 'updated',
  deleted: 'deleted',
  driverResult: 'driver.result',
  transitioned: 'transitioned',
  definitionCreated: 'definition.created',
  definitionUpdated: 'definition.updated',
  definitionDeleted: 'definition.deleted',
  pipelineCreated: 'pipeline.created',
  pipelineUpdated: 'pipeline.updated',
  pipelineDeleted: 'pipeline.deleted',
  stepDispatched: 'step.dispatched',
  stepResult: 'step.result',
  stepCancelled: 'step.cancelled',
  runFinished: 'run.finished',
} as const
export type EventKind = (typeof EventKind)[keyof typeof EventKind]

/** The payload of every message on the events stream. */
export interface ConveyorEvent {
  readonly kind: EventKind
  /** uid of the object the event is about; with `revision` it forms the message id. */
  readonly uid: string
  /** etcd revision at which the change committed. */
  readonly revision: number
  readonly time: string
  readonly type?: string
  readonly name: string
  readonly runid?: string
  readonly version?: number
  readonly object?: Resource | ResourceDefinition
  readonly driver?: string
  readonly outcome?: DriverOutcome
  /** Transitions: the state before and after, the event applied, and the actor's event count. */
  readonly from?: string
  readonly to?: string
  readonly event?: { readonly type: string; readonly id?: string; readonly [key: string]: unknown }
  readonly seq?: number
  /** Pipeline events: the pipeline, the step (dispatch, result, cancel) and the run's status. */
  readonly pipeline?: string
  readonly step?: StepDispatch & {
    readonly status?: string
    readonly message?: string
    readonly data?: Readonly<Record<string, unknown>>
  }
  readonly status?: string
}

/** One stored log line (Conveyor's log shape plus the stream sequence that orders it). */
export interface LogLine {
  readonly runid: string
  readonly driver: string
  readonly pipeline?: string
  /** The pipeline step the line belongs to. */
  readonly step?: string
  readonly message: string
  /** `stdout`, `stderr` or `log`. */
  readonly stream: string
  readonly timestamp: string
  /** JetStream sequence of the line: strictly increasing within a run. */
  readonly seq: number
}

/** Marks the end of one driver's run: no line of that run follows it. */
export interface LogEnd {
  readonly runid: string
  readonly driver: string
  readonly success: boolean
  readonly message: string
  readonly timestamp: string
  readonly seq: number
}
