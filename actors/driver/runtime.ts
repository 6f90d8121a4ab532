import type { NatsConnections } from '../../runtime/nats-connection.ts'
import type { Logger } from '../../runtime/logger.ts'
import type { Semaphore } from '../../runtime/semaphore.ts'
import type { DriverDefinition } from './types.ts'
import type { WorkClient } from './work-client.ts'
import type { Workspaces } from './workspaces.ts'

/** A driver's options once defaults are applied and clamped. */
export interface ResolvedDriverOptions {
  readonly natsUrl: string
  readonly ackWaitMs: number
  readonly maxDeliver: number
  readonly concurrency: number
  readonly events: ReadonlySet<string>
  readonly shutdownGraceMs: number
  readonly resyncMs: number
  readonly instance: string
  readonly workspaceRoot: string
}

/** What the parts of a running driver share. */
export interface DriverRuntime {
  readonly driver: DriverDefinition
  readonly options: ResolvedDriverOptions
  readonly nats: NatsConnections
  readonly client: WorkClient
  readonly workspaces: Workspaces
  readonly logger: Logger
  /** Units of concurrency, shared by live work, catch-up and replays. */
  readonly running: Semaphore
  /** Aborts when the driver is closing (after its grace period). */
  readonly shutdown: AbortSignal
}
