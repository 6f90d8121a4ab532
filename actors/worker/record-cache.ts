import { LRUCache } from 'lru-cache'
import type { ActorRecord } from '../../runtime/actor-record.ts'

/** An actor record with the etcd revision it was read or written at. */
export interface CachedRecord {
  readonly record: ActorRecord
  readonly revision: number
}

/** A bounded LRU of actor records, keyed `type/name`. */
export class RecordCache {
  readonly #entries: LRUCache<string, CachedRecord>

  constructor(max: number) {
    this.#entries = new LRUCache({ max })
  }

  get size(): number {
    return this.#entries.size
  }

  get(key: string): CachedRecord | undefined {
    return this.#entries.get(key)
  }

  set(key: string, entry: CachedRecord): void {
    this.#entries.set(key, entry)
  }

  delete(key: string): void {
    this.#entries.delete(key)
  }

  deleteWhere(predicate: (key: string) => boolean): void {
    for (const key of [...this.#entries.keys()]) if (predicate(key)) this.#entries.delete(key)
  }
}
