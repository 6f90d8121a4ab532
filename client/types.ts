import type { ConveyorEvent, LogLine, Resource, ResourceDefinition } from '../definitions/objects.ts'
import type { DefinitionInput, LogInput, ResourceInput } from '../definitions/api-types.ts'
import type { Pipeline, PipelineInput } from '../definitions/pipeline.ts'
import type { Replay, ReplayRequest } from '../runtime/replays.ts'
import type { Role, TokenInfo } from '../runtime/token-store.ts'
import type { RegisteredDriver } from '../runtime/driver-registry.ts'
import type { HistoryItem, HistoryPage } from '../gateway/history-reader.ts'

export type {
  ConveyorEvent,
  HistoryItem,
  HistoryPage,
  DefinitionInput,
  LogInput,
  LogLine,
  Pipeline,
  PipelineInput,
  RegisteredDriver,
  Replay,
  ReplayRequest,
  Resource,
  ResourceDefinition,
  ResourceInput,
  Role,
  TokenInfo,
}

/** A list answer: `continue` is set when another page follows. */
export interface List<T> {
  readonly items: T[]
  readonly continue?: string
}

/** What a write answered with warnings (e.g. a pipeline naming a driver never seen). */
export type Warned<T> = T & { readonly warnings?: readonly string[] }

/** An event sent to a resource's actor: `type` names it, `id` makes a resend idempotent. */
export interface ActorEvent {
  readonly type: string
  readonly id?: string
  readonly [payload: string]: unknown
}

/** The actor's answer to an event. */
export interface EventResult {
  readonly id?: string
  readonly accepted?: boolean
  /** False when the event is stored but no worker applied it within the wait (202). */
  readonly applied?: boolean
  readonly duplicate?: boolean
  readonly from?: string
  readonly to?: string
  readonly state?: string
  readonly context?: Record<string, unknown>
  readonly done?: boolean
  readonly revision?: number
  readonly seq?: number
}

/** A resource's actor as `GET …/actor` shows it. */
export interface ActorView {
  readonly type: string
  readonly name: string
  readonly runid: string
  readonly state: string
  readonly value: unknown
  readonly status: string
  readonly done: boolean
  readonly context: Record<string, unknown>
  /** Events the current state accepts. */
  readonly accepts: readonly string[]
  readonly tags: readonly string[]
  readonly timers: readonly { readonly id: string; readonly event: string; readonly dueAt: string }[]
  readonly seq: number
  readonly stuck?: { readonly reason: string; readonly since: string; readonly parked: number }
  readonly revision: number
  readonly lifecycle: { readonly id: string; readonly machine: Record<string, unknown> }
  readonly mermaid: string
}

export interface VerifyResult {
  readonly ok: boolean
  readonly events: number
  readonly rebuilt: unknown
  readonly stored: unknown
  readonly divergence?: {
    readonly seq: number
    readonly event: unknown
    readonly expected: unknown
    readonly got: unknown
    readonly reason: string
  }
}

export interface ParkedEvent {
  readonly seq: number
  readonly event: ActorEvent
  readonly reason: string
  readonly parkedAt: string
}

export interface TokenCreateRequest {
  readonly role: Role
  readonly types?: readonly string[]
  readonly driver?: string
  readonly description?: string
  /** `30d`, `12h` or milliseconds. */
  readonly expiresIn?: string | number
}

/** A new token: the secret is in `token`, shown this once. */
export type CreatedToken = TokenInfo & { readonly token: string }

export interface ReplayProgress extends Replay {
  readonly delivered: number
}

export interface DriverIdentity {
  readonly user: string
  readonly password: string
  readonly inboxPrefix: string
  readonly [more: string]: unknown
}

export interface Readiness {
  readonly status: string
  readonly [detail: string]: unknown
}
