import type { IKeyValue } from 'etcd3'
import { presentDesired, type StoredResource } from '../runtime/resource-view.ts'

/** One committed change of a resource, as watchers receive it. */
export interface ResourceChange {
  readonly kind: 'created' | 'updated' | 'deleted'
  /** etcd revision of the commit: strictly increasing along a watch; resume after it. */
  readonly revision: number
  readonly name: string
  /** The resource as stored (for `deleted`: as it was); `metadata.revision` is the change's revision. */
  readonly object: Record<string, unknown>
  readonly labels: Readonly<Record<string, string>>
  /** About what the change weighs in memory (its stored JSON). */
  readonly bytes: number
  /** No other change of the type has this revision after this one (one transaction may write several). */
  readonly endsRevision: boolean
}

/** The change an etcd watch event (or a read key, as a `Put`) stands for; undefined for what is not a resource. */
export function changeOf(
  event: { type: 'Put' | 'Delete'; kv: IKeyValue; prev_kv?: IKeyValue },
  endsRevision = true,
): ResourceChange | undefined {
  const source = event.type === 'Delete' ? event.prev_kv : event.kv
  if (!source || source.value.length === 0) return undefined
  let stored: StoredResource
  try {
    stored = JSON.parse(source.value.toString()) as StoredResource
  } catch {
    return undefined
  }
  const revision = Number(event.kv.mod_revision)
  const object = presentDesired(stored, revision)
  const kind =
    event.type === 'Delete' ? 'deleted' : event.kv.create_revision === event.kv.mod_revision ? 'created' : 'updated'
  return {
    kind,
    revision,
    name: stored.name,
    object: object as unknown as Record<string, unknown>,
    labels: stored.metadata.labels ?? {},
    bytes: source.value.length + 128,
    endsRevision,
  }
}
