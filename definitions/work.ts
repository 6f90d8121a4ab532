import type { StepDispatch } from './pipeline.ts'
import type { DriverOutcome, Resource } from './objects.ts'

/**
 * The work protocol between drivers and the actor that owns a resource. A driver never writes
 * the database: before work it claims the work from the actor, renews the claim while it works,
 * and reports the outcome; the worker hosting the actor commits each of these in the actor record
 * (under its partition fencing) and answers. Each is a core NATS request to
 * `conveyor.work.{pNN}.{type}.{name}`, joined to the actor's mailbox so it is applied in order
 * with the actor's other events; a lost one is asked again, as every request is idempotent by its token.
 */
export const WorkEvent = {
  claim: 'conveyor.claim',
  renew: 'conveyor.renew',
  report: 'conveyor.report',
} as const
export type WorkEvent = (typeof WorkEvent)[keyof typeof WorkEvent]

/** Which piece of work a claim, renewal or report is about. */
export type WorkRef =
  /** One dispatch of one pipeline step. */
  | {
      readonly kind: 'step'
      readonly uid: string
      readonly runid: string
      readonly step: string
      readonly dispatch: number
    }
  /** The reconcile of one version (run id) of a resource without a pipeline by one driver; `deleted` for its deletion. */
  | {
      readonly kind: 'reconcile'
      readonly uid: string
      readonly runid: string
      readonly driver: string
      readonly revision: number
      readonly deleted?: boolean
    }

/** A claim on a piece of work, kept in the actor record while it runs. */
export interface WorkClaim {
  /** Chosen by the claiming driver instance; the same token claims again idempotently. */
  readonly token: string
  /** The driver instance holding it (for `busy` answers and `GET …/actor`). */
  readonly holder: string
  /** 1 for the first execution of this work, +1 for every re-execution (a takeover, a retry). */
  readonly execution: number
  /** Milliseconds since the epoch after which another instance may take the work over. */
  readonly expiresAt: number
}

export interface ClaimRequest {
  readonly type: typeof WorkEvent.claim
  /** Unique per message, returned in the answer; the token makes the claim idempotent. */
  readonly id: string
  readonly work: WorkRef
  readonly token: string
  readonly holder: string
  /** How long the claim lives without a renewal. */
  readonly leaseMs: number
  /** A replay asks for the work as stored without claiming it: `go` (to run it again and only log the result) or `stale`. */
  readonly replay?: boolean
}

export interface RenewRequest {
  readonly type: typeof WorkEvent.renew
  readonly id: string
  readonly work: WorkRef
  readonly token: string
  readonly leaseMs: number
}

export interface ReportRequest {
  readonly type: typeof WorkEvent.report
  readonly id: string
  readonly work: WorkRef
  readonly token: string
  readonly success: boolean
  /** For steps: false for `TerminalError` and `{success: false}` (no retry). */
  readonly retryable: boolean
  readonly message: string
  readonly data: Readonly<Record<string, unknown>>
}

export type WorkRequest = ClaimRequest | RenewRequest | ReportRequest

/** What a claim is answered. */
export type ClaimAnswer =
  /** Run it: this is execution `execution`; for a step, `step` is the step as stored in the plan and `steps` the data of the run's finished steps. */
  | {
      readonly result: 'go'
      readonly execution: number
      readonly expiresAt: number
      readonly step?: StepDispatch
      readonly steps?: Readonly<Record<string, Readonly<Record<string, unknown>>>>
      readonly resource?: Resource
    }
  /** It finished before: nothing runs again; `outcome` is what was recorded. */
  | { readonly result: 'done'; readonly outcome: Pick<DriverOutcome, 'success' | 'message' | 'data'> }
  /** It no longer matters (superseded, cancelled, deleted): ack and drop. */
  | { readonly result: 'stale'; readonly reason: string }
  /** Another instance holds a live claim until `expiresAt`. */
  | { readonly result: 'busy'; readonly holder: string; readonly expiresAt: number }

/** What a renewal is answered: keep going, or stop (the claim was lost). */
export type RenewAnswer =
  { readonly result: 'ok'; readonly expiresAt: number } | { readonly result: 'abort'; readonly reason: string }

/** What a report is answered: recorded now, recorded before (a repeat), or no longer wanted. */
export type ReportAnswer =
  | { readonly result: 'recorded' }
  | { readonly result: 'duplicate' }
  | { readonly result: 'stale'; readonly reason: string }

export type WorkAnswer = ClaimAnswer | RenewAnswer | ReportAnswer

/** The work id a reconcile claim is recorded under: one per resource version, another for its deletion. */
export const reconcileWorkId = (runid: string, deleted: boolean | undefined): string =>
  deleted ? `${runid}:deleted` : runid

/** The driver's per-resource record in the actor: its claim and outcome for the current work. */
export interface DriverWork {
  /** The work id (`reconcileWorkId`) the claim and execution count are for. */
  readonly work: string
  readonly executions: number
  readonly claim?: WorkClaim
  /** The driver's latest outcome, possibly for an earlier version (see `outcomeFor`). */
  readonly outcome?: DriverOutcome
  /** The work id the outcome answers: equal to `work` once this work is done. */
  readonly outcomeFor?: string
}
