import type { Etcd3, ICompare, IRequestOp, IKeyValue } from 'etcd3'

/** Small builders over etcd's raw transaction shapes, so callers read like the invariant they state. */

const bytes = (text: string): Buffer => Buffer.from(text)

/** The exclusive end of a prefix range: the prefix with its last byte incremented. */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix)
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1
      return end.subarray(0, i + 1)
    }
  }
  return Buffer.from([0])
}

export const compare = {
  /** The key does not exist. */
  absent: (key: string): ICompare => ({ key: bytes(key), target: 'Create', result: 'Equal', create_revision: 0 }),
  /** The key exists and was last modified at `revision` (0 means: must not exist). */
  modRevision: (key: string, revision: number): ICompare => ({
    key: bytes(key),
    target: 'Mod',
    result: 'Equal',
    mod_revision: revision,
  }),
  /** No key exists under the prefix. */
  noneUnder: (prefix: string): ICompare => ({
    key: bytes(prefix),
    range_end: prefixEnd(prefix),
    target: 'Version',
    result: 'Equal',
    version: 0,
  }),
  /** The key was created at `revision` (and not deleted and re-created since): a fencing token. */
  createRevision: (key: string, revision: number): ICompare => ({
    key: bytes(key),
    target: 'Create',
    result: 'Equal',
    create_revision: revision,
  }),
}

export const op = {
  put: (key: string, value: string): IRequestOp => ({ request_put: { key: bytes(key), value: bytes(value) } }),
  delete: (key: string): IRequestOp => ({ request_delete_range: { key: bytes(key) } }),
  deletePrefix: (prefix: string): IRequestOp => ({
    request_delete_range: { key: bytes(prefix), range_end: prefixEnd(prefix) },
  }),
  get: (key: string): IRequestOp => ({ request_range: { key: bytes(key) } }),
}

/** One stored key with its revisions as numbers. */
export interface StoredValue {
  readonly key: string
  readonly value: string
  readonly modRevision: number
  readonly createRevision: number
}

export const toStored = (kv: IKeyValue): StoredValue => ({
  key: kv.key.toString(),
  value: kv.value.toString(),
  modRevision: Number(kv.mod_revision),
  createRevision: Number(kv.create_revision),
})

/** etcd's default `--max-txn-ops`. */
export const MAX_TXN_OPS = 128

/** Reads several single keys at one revision: one round trip per 128 keys, all at the first one's revision. */
export async function readKeys(
  etcd: Etcd3,
  keyList: readonly string[],
  atRevision?: number,
): Promise<{ values: (StoredValue | undefined)[]; revision: number }> {
  const values: (StoredValue | undefined)[] = []
  let revision = atRevision ?? 0
  for (let start = 0; start === 0 || start < keyList.length; start += MAX_TXN_OPS) {
    const chunk = keyList.slice(start, start + MAX_TXN_OPS)
    const response = await etcd.kv.txn({
      success: chunk.map((key) => ({ request_range: { key: bytes(key), ...(revision ? { revision } : {}) } })),
    })
    revision ||= Number(response.header.revision)
    for (const r of response.responses) {
      const kv = r.response_range?.kvs[0]
      values.push(kv ? toStored(kv) : undefined)
    }
    if (keyList.length === 0) break
  }
  return { values, revision }
}

export interface RangeOptions {
  readonly startAfter?: string
  readonly limit?: number
  readonly revision?: number
}

/** Lists a prefix in key order, optionally starting after a key and at a revision. */
export async function readPrefix(
  etcd: Etcd3,
  prefix: string,
  options: RangeOptions = {},
): Promise<{ values: StoredValue[]; more: boolean; revision: number }> {
  const start = options.startAfter ? Buffer.concat([bytes(options.startAfter), Buffer.from([0])]) : bytes(prefix)
  const response = await etcd.kv.range({
    key: start,
    range_end: prefixEnd(prefix),
    ...(options.limit ? { limit: options.limit } : {}),
    ...(options.revision ? { revision: options.revision } : {}),
  })
  return { values: response.kvs.map(toStored), more: response.more, revision: Number(response.header.revision) }
}

/** Reads keys in [start, end) at a revision. */
export async function readRange(etcd: Etcd3, start: string, end: string, revision?: number): Promise<StoredValue[]> {
  const response = await etcd.kv.range({ key: bytes(start), range_end: bytes(end), ...(revision ? { revision } : {}) })
  return response.kvs.map(toStored)
}
