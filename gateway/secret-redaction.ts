import { redactResource, secretFieldsOf } from '../definitions/secret-fields.ts'
import type { ConveyorEvent } from '../definitions/objects.ts'
import type { Principal } from './auth.ts'
import type { HistoryPage } from './history-reader.ts'

/**
 * True when the caller reads secret spec values redacted: everyone who may not write them
 * (viewers, and drivers should they ever read), and a caller the gateway could not name. Operators
 * and admins read the values (they could write them).
 */
export function readsRedacted(principal: Principal | undefined): boolean {
  return principal?.role !== 'admin' && principal?.role !== 'operator'
}

/** A resource as the caller may read it (the same object for a writer, or when it has no secret fields). */
export function resourceFor<T>(principal: Principal | undefined, resource: T): T {
  return readsRedacted(principal) ? redactResource(resource) : resource
}

/** An event as the caller may read it: the resource it carries (`created`, `updated`, `deleted`) redacted. */
export function eventFor(principal: Principal | undefined, event: ConveyorEvent): ConveyorEvent {
  if (!event.object || !readsRedacted(principal) || secretFieldsOf(event.object).length === 0) return event
  return { ...event, object: redactResource(event.object) }
}

/** A page of history as the caller may read it. */
export function historyFor(principal: Principal | undefined, page: HistoryPage): HistoryPage {
  if (!readsRedacted(principal)) return page
  return {
    ...page,
    items: page.items.map((item) => {
      const event = eventFor(principal, item.event)
      return event === item.event ? item : { ...item, event }
    }),
  }
}
