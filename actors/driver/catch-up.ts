import { backoffMs } from '../../runtime/backoff.ts'
import { PARTITIONS, subjects } from '../../runtime/keys.ts'
import type { SyncPage, SyncRequest } from '../../definitions/sync.ts'
import type { ConveyorEvent } from '../../definitions/objects.ts'
import type { Delivery } from './delivery.ts'
import type { ResourceRunner } from './resource-runs.ts'
import type { DriverRuntime } from './runtime.ts'

const REQUEST_TIMEOUT_MS = 5000
const PARALLEL_PARTITIONS = 8

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Level-triggered catch-up, as a Kubernetes controller lists before it watches: asks the owner of
 * every partition for the resources of the driver's types whose current version has no outcome
 * from it, and reconciles each (claims make a resource the live consumer also delivers run once).
 * Resolves when every such resource has been handled; stops early when the driver closes.
 */
export async function catchUp(
  runtime: DriverRuntime,
  resources: ResourceRunner,
  closing: AbortSignal,
): Promise<number> {
  const { driver } = runtime
  if (driver.resources.length === 0) return 0
  // One request per partition and type: a driver's NATS permissions may allow some types only.
  const slices = Array.from({ length: PARTITIONS }, (_, partition) =>
    [...new Set(driver.resources)].map((type) => ({ partition, type })),
  ).flat()
  const work: Promise<void>[] = []
  let found = 0
  const lanes = Array.from({ length: PARALLEL_PARTITIONS }, async () => {
    for (let slice = slices.shift(); slice !== undefined && !closing.aborted; slice = slices.shift()) {
      let after: string | undefined
      do {
        const page = await ask(runtime, slice.partition, slice.type, after ? { after } : {}, closing)
        if (!page) return
        for (const event of page.items) {
          found++
          work.push(reconcileOnce(runtime, resources, event, closing))
        }
        after = page.next
      } while (after !== undefined)
    }
  })
  await Promise.all(lanes)
  await Promise.all(work)
  return found
}

/** One page from a partition's owner, asked again (with backoff) until some worker answers. */
async function ask(
  runtime: DriverRuntime,
  partition: number,
  type: string,
  request: SyncRequest,
  closing: AbortSignal,
): Promise<SyncPage | undefined> {
  const subject = subjects.sync(partition, type, runtime.driver.name)
  for (let attempt = 1; !closing.aborted; attempt++) {
    try {
      const reply = await runtime.nats.nats.request(subject, JSON.stringify(request), {
        timeout: REQUEST_TIMEOUT_MS,
      })
      const page = reply.json<SyncPage & { error?: string }>()
      if (!page.error) return page
    } catch {
      // No owner yet (no worker, or a hand-over): ask again.
    }
    await sleep(backoffMs(attempt, { baseMs: 250, maxMs: 5000 }))
  }
  return undefined
}

/** Runs one catch-up item to its end: acked, or retried in-process with backoff like a redelivery. */
async function reconcileOnce(
  runtime: DriverRuntime,
  resources: ResourceRunner,
  event: ConveyorEvent,
  closing: AbortSignal,
): Promise<void> {
  for (let attempt = 1; !closing.aborted; attempt++) {
    let retryIn: number | undefined
    const delivery: Delivery = {
      attempt,
      working: () => {},
      ack: async () => {},
      retry: (delayMs) => void (retryIn = delayMs),
    }
    await runtime.running.acquire()
    try {
      await resources.handle(event, delivery)
    } catch (error) {
      if (closing.aborted) return
      runtime.logger.warn('catching up on a resource failed; retrying', {
        resource: `${event.type}/${event.name}`,
        error: String(error),
      })
      retryIn = backoffMs(attempt, { baseMs: 500 })
    } finally {
      runtime.running.release()
    }
    if (retryIn === undefined) return
    await sleep(retryIn)
  }
}
