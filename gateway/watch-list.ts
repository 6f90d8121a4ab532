import type { Etcd3, IKeyValue } from 'etcd3'
import { keys } from '../runtime/keys.ts'
import { readPrefix } from '../runtime/etcd-ops.ts'
import { changeOf } from './resource-change.ts'

/** One page of a type's current resources, all read at one revision. */
export interface ListPage {
  readonly revision: number
  readonly items: Record<string, unknown>[]
  /** More pages follow. */
  readonly more: boolean
}

/** Keys per etcd read of a list. */
const READ_KEYS = 200

/**
 * The current resources of a type, page by page (each about `pageBytes`, or one item bigger than
 * that), all at one revision; each etcd read is made when the page before was taken.
 */
export async function* listPages(
  etcd: Etcd3,
  type: string,
  pageBytes: number,
  keep?: (labels: Readonly<Record<string, string>>) => boolean,
): AsyncGenerator<ListPage> {
  let startAfter: string | undefined
  let revision: number | undefined
  let page: Record<string, unknown>[] = []
  let bytes = 0
  /** A full page, sent as soon as an item after it shows it is not the last. */
  let full: Record<string, unknown>[] | undefined
  for (;;) {
    const read = await readPrefix(etcd, keys.resources(type), {
      limit: READ_KEYS,
      ...(startAfter ? { startAfter } : {}),
      ...(revision ? { revision } : {}),
    })
    revision ??= read.revision
    for (const value of read.values) {
      const change = changeOf({
        type: 'Put',
        kv: {
          key: Buffer.from(value.key),
          value: Buffer.from(value.value),
          mod_revision: String(value.modRevision),
          create_revision: String(value.createRevision),
        } as IKeyValue,
      })
      if (!change || (keep && !keep(change.labels))) continue
      if (full) {
        yield { revision, items: full, more: true }
        full = undefined
      }
      page.push(change.object)
      bytes += change.bytes
      if (bytes >= pageBytes) {
        full = page
        page = []
        bytes = 0
      }
    }
    if (!read.more || read.values.length === 0) break
    startAfter = read.values.at(-1)!.key
  }
  // Any item after a full page sent it: a full page left over is the last one.
  yield { revision, items: full ?? page, more: false }
}
