import type { ConveyorEvent } from './objects.ts'

/**
 * A driver's catch-up request to the owner of one partition (core NATS request/reply on
 * `conveyor.sync.pNN.{type}.{driver}`): the current version of every resource of that type in
 * the partition that has no outcome from that driver, a page at a time.
 */
export interface SyncRequest {
  /** The `next` of the previous page. */
  readonly after?: string
}

export interface SyncPage {
  /** One `created` or `updated` event per resource to reconcile, as the live consumer would carry it. */
  readonly items: readonly ConveyorEvent[]
  /** Pass as `after` for the next page; absent on the last one. */
  readonly next?: string
}
