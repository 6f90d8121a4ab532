import type { Etcd3, ICompare, IRequestOp, IKeyValue } from 'etcd3'
import { LRUCache } from 'lru-cache'
import { isResponseTooLarge } from './etcd-faults.ts'

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
  /** Deletes the keys in [start, end). */
  deleteRange: (start: string, end: string): IRequestOp => ({
    request_delete_range: { key: bytes(start), range_end: bytes(end) },
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

/** The largest response the etcd client accepts (`grpc.max_receive_message_length`); gRPC's default is 4 MiB. */
export const ETCD_MAX_RESPONSE_BYTES = 64 * 1024 * 1024

/** What one read aims to fetch per round trip: pages shrink for big values and grow back for small ones. */
export const READ_BUDGET_BYTES = 4 * 1024 * 1024

/** Values one range read returns at most. */
const MAX_PAGE = 500

/**
 * The largest value seen lately, per client and per range (or `#keys` for point reads), so the
 * next read of the same range starts with a page that fits instead of learning it again.
 */
const sizeHints = new WeakMap<Etcd3, LRUCache<string, number>>()
const hintsOf = (etcd: Etcd3): LRUCache<string, number> => {
  let hints = sizeHints.get(etcd)
  if (!hints) sizeHints.set(etcd, (hints = new LRUCache<string, number>({ max: 1000 })))
  return hints
}

/** How many values fit the budget when each may be as large as `largest`. */
const countFor = (largest: number | undefined, cap: number): number =>
  largest === undefined
    ? Math.min(cap, 64)
    : Math.max(1, Math.min(cap, Math.floor(READ_BUDGET_BYTES / Math.max(largest, 1))))

const largestOf = (kvs: readonly IKeyValue[]): number => kvs.reduce((most, kv) => Math.max(most, kv.value.length), 0)

/**
 * Runs a read of `count` values; when the response would exceed the client's limit it learns
 * that the values are bigger than thought and tries again with fewer (down to one, which always
 * fits: etcd takes no value larger than its request limit).
 */
async function fitting<T>(
  etcd: Etcd3,
  hint: string,
  cap: number,
  read: (count: number) => Promise<{ result: T; kvs: readonly IKeyValue[] }>,
): Promise<T> {
  const hints = hintsOf(etcd)
  let count = countFor(hints.get(hint), cap)
  for (;;) {
    try {
      const { result, kvs } = await read(count)
      if (kvs.length > 0) hints.set(hint, largestOf(kvs))
      return result
    } catch (error) {
      if (!isResponseTooLarge(error) || count === 1) throw error
      const atLeast = Math.ceil(ETCD_MAX_RESPONSE_BYTES / count)
      hints.set(hint, Math.max(hints.get(hint) ?? 0, atLeast))
      count = Math.min(Math.ceil(count / 2), countFor(hints.get(hint), cap))
    }
  }
}

/**
 * Reads several single keys at one revision (the first round trip's, unless given), in as few
 * round trips as etcd's op limit and the values' sizes allow.
 */
export async function readKeys(
  etcd: Etcd3,
  keyList: readonly string[],
  atRevision?: number,
): Promise<{ values: (StoredValue | undefined)[]; revision: number }> {
  const values: (StoredValue | undefined)[] = []
  let revision = atRevision ?? 0
  let start = 0
  do {
    const taken = await fitting(etcd, '#keys', Math.max(1, Math.min(MAX_TXN_OPS, keyList.length)), async (count) => {
      const chunk = keyList.slice(start, start + count)
      const response = await etcd.kv.txn({
        success: chunk.map((key) => ({ request_range: { key: bytes(key), ...(revision ? { revision } : {}) } })),
      })
      const kvs = response.responses.map((r) => r.response_range?.kvs[0])
      return { result: { response, kvs, count: chunk.length }, kvs: kvs.filter((kv) => kv !== undefined) }
    })
    revision ||= Number(taken.response.header.revision)
    for (const kv of taken.kvs) values.push(kv ? toStored(kv) : undefined)
    start += taken.count
  } while (start < keyList.length)
  return { values, revision }
}

export interface RangeOptions {
  readonly startAfter?: string
  /** Values to return at most; fewer (with `more`) when they are big. Without it: the whole prefix, read page by page. */
  readonly limit?: number
  readonly revision?: number
}

/**
 * Lists a prefix in key order, optionally starting after a key and at a revision. Pages are
 * sized by the values' bytes, so a read never exceeds what the client accepts; with `limit`
 * one page comes back (`more` when the prefix holds further keys), without it every key does.
 */
export async function readPrefix(
  etcd: Etcd3,
  prefix: string,
  options: RangeOptions = {},
): Promise<{ values: StoredValue[]; more: boolean; revision: number }> {
  const end = prefixEnd(prefix)
  const values: StoredValue[] = []
  let revision = options.revision ?? 0
  let after = options.startAfter
  const limit = options.limit !== undefined && options.limit > 0 ? options.limit : undefined
  for (;;) {
    const cap = Math.min(MAX_PAGE, limit ?? MAX_PAGE)
    const response = await fitting(etcd, prefix, cap, async (count) => {
      const range = await etcd.kv.range({
        key: after ? Buffer.concat([bytes(after), Buffer.from([0])]) : bytes(prefix),
        range_end: end,
        limit: count,
        ...(revision ? { revision } : {}),
      })
      return { result: range, kvs: range.kvs }
    })
    revision ||= Number(response.header.revision)
    values.push(...response.kvs.map(toStored))
    if (limit !== undefined || !response.more || response.kvs.length === 0)
      return { values, more: response.more, revision }
    after = values.at(-1)!.key
  }
}

/** Reads keys in [start, end) at a revision, page by page (all at the first page's revision). */
export async function readRange(etcd: Etcd3, start: string, end: string, revision?: number): Promise<StoredValue[]> {
  const values: StoredValue[] = []
  let at = revision ?? 0
  let from = bytes(start)
  for (;;) {
    const response = await fitting(etcd, start, MAX_PAGE, async (count) => {
      const range = await etcd.kv.range({
        key: from,
        range_end: bytes(end),
        limit: count,
        ...(at ? { revision: at } : {}),
      })
      return { result: range, kvs: range.kvs }
    })
    at ||= Number(response.header.revision)
    values.push(...response.kvs.map(toStored))
    if (!response.more || response.kvs.length === 0) return values
    from = Buffer.concat([response.kvs.at(-1)!.key, Buffer.from([0])])
  }
}
