import type { DriverIdentitySource } from './identity.ts'
import type { NatsAuth } from '../../runtime/config.ts'
import type { ConveyorEvent, Resource } from '../../definitions/objects.ts'
import type { StepDispatch } from '../../definitions/pipeline.ts'

/** What a reconcile reports; recorded on the resource's `status.drivers[name]` and emitted as `driver.result`. */
export interface DriverResult {
  readonly success: boolean
  /** @default '' */
  readonly message?: string
  /** @default {} */
  readonly data?: Record<string, unknown>
}

/** Everything one reconcile run can see and do. */
export interface DriverContext {
  /** The resource as it was at the event's revision (for `deleted`: its last state). */
  readonly resource: Resource
  readonly event: ConveyorEvent
  readonly runid: string
  /**
   * 1 on the first execution, then +1 for every re-execution: a takeover after a crash, a
   * redelivery after a retryable error, or a pipeline step's retry. Counted by the resource's actor.
   */
  readonly attempt: number
  /** For a pipeline step: which step, its dispatch number, its timeout, and (shell) its commands, as stored in the run's plan. */
  readonly step?: StepDispatch
  /** For a pipeline step: the `data` each earlier step of the run returned, by step id. @default {} */
  readonly steps: Readonly<Record<string, Readonly<Record<string, unknown>>>>
  /** For a pipeline step: a directory shared by the steps of this run that run on this instance, removed when the run ends. */
  readonly workspace?: string
  /** The pipeline of the run, when this is a step. */
  readonly pipeline?: string
  /** True when this event was delivered by a replay rather than live. */
  readonly replayed: boolean
  /** Fires when the run must stop: cancelled, timed out, or the driver is shutting down. */
  readonly signal: AbortSignal
  /**
   * Appends a line to the run's log (`GET /logs/streams/:driver/:runid`); arguments are formatted as `console.log` does.
   * Returns a promise while the log's buffer is full: a driver that logs a lot awaits it to go at the pace of the
   * log stream. Past the execution's limit (`CONVEYOR_LOG_STEP_MAX_BYTES`, `CONVEYOR_LOG_STEP_MAX_LINES`) the log
   * ends with a truncation marker and later lines are dropped.
   */
  log(...args: unknown[]): Promise<void> | undefined
  /** Appends a line under a stream name (`stdout`, `stderr`, …) instead of `log`; returns as `log` does. */
  output(stream: string, line: string): Promise<void> | undefined
  /** Renews this run's claim and tells JetStream it is alive. Sent automatically while reconcile runs; call it in tight loops too. */
  heartbeat(): void
  /** Sends an event to the resource's actor (through its inbox); `id` makes it idempotent and defaults to a new one. */
  send(event: { readonly type: string; readonly id?: string; readonly [key: string]: unknown }): Promise<void>
}

/**
 * A driver as declared with `defineDriver`.
 * @example
 * export default defineDriver({
 *   name: 'git-cloner',
 *   resources: ['build'],
 *   async reconcile(ctx) {
 *     ctx.log('cloning', ctx.resource.spec.repository)
 *     return { success: true, message: 'cloned' }
 *   },
 * })
 */
export interface DriverDefinition {
  /** Unique driver name; instances with the same name share work. */
  readonly name: string
  /**
   * Resource types (definition names) whose changes this driver handles when the resource has no
   * pipeline. Pipeline steps that name the driver reach it whatever the type; a driver that only
   * runs steps lists none.
   */
  readonly resources: readonly string[]
  /** Runs at once per instance. @default 1 */
  readonly concurrency?: number
  /** Which event kinds start a run. @default ['created', 'updated', 'deleted'] */
  readonly events?: readonly ('created' | 'updated' | 'deleted')[]
  reconcile(ctx: DriverContext): Promise<DriverResult | void> | DriverResult | void
}

/** Options of `runDriver`; anything omitted comes from the environment (`CONVEYOR_NATS_URL`, …). A driver needs NATS only. */
export interface RunDriverOptions {
  /** @default 'nats://127.0.0.1:4222' (env `CONVEYOR_NATS_URL`) */
  readonly natsUrl?: string
  /** How to sign in to NATS. @default the environment's (`CONVEYOR_NATS_USER`/`CONVEYOR_NATS_PASSWORD` or `CONVEYOR_NATS_CREDS`), else `credentials.json` in the data directory */
  readonly natsAuth?: NatsAuth
  /**
   * Time JetStream waits for an ack or heartbeat before redelivering, and the lease of a claim:
   * an instance that stops renewing for this long loses its work to another (env `CONVEYOR_DRIVER_ACK_WAIT_MS`).
   * @default 30000
   */
  readonly ackWaitMs?: number
  /** Executions of one piece of work that end in an error or a crash before it is recorded as failed; waiting on an outage is none (env `CONVEYOR_DRIVER_MAX_DELIVER`). @default 5 */
  readonly maxDeliver?: number
  /** On close, how long runs in progress may finish before `ctx.signal` aborts them. @default 3000 */
  readonly shutdownGraceMs?: number
  /**
   * How often the driver catches up again while it runs (level-triggered, as a Kubernetes
   * controller's resync): a resource change whose message was lost is reconciled then. @default 300000
   */
  readonly resyncMs?: number
  /** This instance's id in the registry and in claims. @default a random id */
  readonly instance?: string
  /**
   * Get the driver's own NATS identity from the gateway with a `driver` token (env
   * `CONVEYOR_DRIVER_TOKEN`, with `CONVEYOR_API_URL`) instead of signing in with `natsAuth`: its
   * permissions reach only this driver's consumers, requests, logs and registry entries.
   */
  readonly identity?: DriverIdentitySource
  /** Where pipeline runs get their shared workspace. @default `$CONVEYOR_DATA_DIR/workspaces`, else the system's temp dir */
  readonly workspaceRoot?: string
}

/** A running driver instance. */
export interface DriverHandle {
  readonly name: string
  /** Stops taking work, waits for runs in progress, then disconnects. Harmless when called twice. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}
