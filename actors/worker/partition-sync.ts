import type { Subscription } from '@nats-io/transport-node'
import type { ActorRecord } from '../../runtime/actor-record.ts'
import { readKeys, readPrefix } from '../../runtime/etcd-ops.ts'
import { keys, parseSyncSubject, subjects } from '../../runtime/keys.ts'
import { presentResource, type StoredResource } from '../../runtime/resource-view.ts'
import type { ConveyorEvent } from '../../definitions/objects.ts'
import type { SyncPage, SyncRequest } from '../../definitions/sync.ts'
import type { HostContext } from './partition-host.ts'

const PAGE = 200
/** Stays well inside NATS's default 1 MB payload limit. */
const MAX_REPLY_BYTES = 512 * 1024

/** What a catch-up page is for: one driver, its types, from a cursor. */
interface SyncQuery {
  readonly driver: string
  readonly types: readonly string[]
  readonly after?: string
}

/** True when the driver still owes this record's current version an outcome. */
function owes(record: ActorRecord, request: SyncQuery): boolean {
  if (record.deletedAt || record.run || !request.types.includes(record.type)) return false
  return record.drivers?.[request.driver]?.outcomeFor !== record.runid
}

/**
 * One page of the partition's resources the driver has not reconciled. Actor keys sort by type,
 * so each type is one range; the cursor is the last key read (or a type's prefix to start it).
 */
async function page(context: HostContext, partition: number, request: SyncQuery): Promise<SyncPage> {
  const { etcd } = context.connections
  const prefixes = [...new Set(request.types)].sort().map((type) => keys.actorsOfType(partition, type))
  const after = request.after
  const index = after === undefined ? 0 : prefixes.findIndex((prefix) => after.startsWith(prefix) || after < prefix)
  const prefix = prefixes[index]
  if (prefix === undefined) return { items: [] }
  const actors = await readPrefix(etcd, prefix, {
    limit: PAGE,
    ...(after?.startsWith(prefix) ? { startAfter: after } : {}),
  })
  const following = prefixes[index + 1]
  const owed = actors.values.map((v) => JSON.parse(v.value) as ActorRecord).filter((record) => owes(record, request))
  const resources = await readKeys(
    etcd,
    owed.map((record) => keys.resource(record.type, record.name)),
    actors.revision,
  )
  const items: ConveyorEvent[] = []
  let bytes = 0
  let next = actors.more ? actors.values.at(-1)?.key : following
  for (const [i, record] of owed.entries()) {
    const value = resources.values[i]
    if (!value) continue
    const stored = JSON.parse(value.value) as StoredResource
    if (stored.metadata.uid !== record.uid) continue
    const object = presentResource(stored, value.modRevision, record)
    const event: ConveyorEvent = {
      kind: stored.metadata.version === 1 ? 'created' : 'updated',
      uid: record.uid,
      revision: value.modRevision,
      time: stored.metadata.updatedAt,
      type: record.type,
      name: record.name,
      runid: record.runid,
      version: stored.metadata.version,
      object,
    }
    bytes += value.value.length + 1024
    if (bytes > MAX_REPLY_BYTES && items.length > 0) {
      next = keys.actor(owed[i - 1]!.type, owed[i - 1]!.name)
      break
    }
    items.push(event)
  }
  return { items, ...(next ? { next } : {}) }
}

/** Answers catch-up requests for a partition while this worker owns it. */
export function serveSync(context: HostContext, partition: number): Subscription {
  return context.connections.nats.subscribe(subjects.syncOfPartition(partition), {
    callback: (error, message) => {
      if (error) return
      const target = parseSyncSubject(message.subject)
      let request: SyncQuery
      try {
        const body = message.json<SyncRequest>()
        if (!target || typeof body !== 'object' || body === null) throw new TypeError('not a sync request')
        if (body.after !== undefined && typeof body.after !== 'string') throw new TypeError('not a sync request')
        request = { driver: target.driver, types: [target.type], ...(body.after ? { after: body.after } : {}) }
      } catch {
        message.respond(JSON.stringify({ error: 'expected {after?} on conveyor.sync.pNN.{type}.{driver}' }))
        return
      }
      page(context, partition, request).then(
        (answer) => message.respond(JSON.stringify(answer)),
        (failure: unknown) => {
          context.logger.warn('answering a catch-up request failed', { partition, error: String(failure) })
          message.respond(JSON.stringify({ error: 'unavailable', message: String(failure) }))
        },
      )
    },
  })
}
