import type { Etcd3 } from 'etcd3'
import { MAX_TXN_OPS, readKeys, type StoredValue } from './etcd-ops.ts'

/**
 * Coalesces single-key reads: while one read transaction is in flight, new reads queue and go
 * out together (up to etcd's op limit), so loading many actors costs few round trips.
 */
export class ReadBatcher {
  readonly #etcd: Etcd3
  #queue: { key: string; resolve: (value: StoredValue | undefined) => void; reject: (error: unknown) => void }[] = []
  #inFlight = 0
  readonly #maxInFlight: number

  constructor(etcd: Etcd3, maxInFlight = 2) {
    this.#etcd = etcd
    this.#maxInFlight = maxInFlight
  }

  read(key: string): Promise<StoredValue | undefined> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ key, resolve, reject })
      this.#pump()
    })
  }

  #pump(): void {
    while (this.#inFlight < this.#maxInFlight && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, MAX_TXN_OPS)
      this.#inFlight++
      void readKeys(
        this.#etcd,
        batch.map((b) => b.key),
      )
        .then(
          ({ values }) => batch.forEach((b, i) => b.resolve(values[i])),
          (error: unknown) => batch.forEach((b) => b.reject(error)),
        )
        .finally(() => {
          this.#inFlight--
          this.#pump()
        })
    }
  }
}
