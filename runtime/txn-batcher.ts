import { GRPCInvalidArgumentError, type Etcd3, type ICompare, type IRequestOp } from 'etcd3'

/** One independent conditional write: all compares must hold for all ops to apply. */
export interface TxnWrite {
  readonly compares: readonly ICompare[]
  readonly ops: readonly IRequestOp[]
}

export interface TxnOutcome {
  readonly succeeded: boolean
  /** The revision the write committed at (or the store's revision when it failed). */
  readonly revision: number
}

export interface TxnBatcherOptions {
  /** etcd's `--max-txn-ops` bounds compares and ops of one transaction. @default 128 */
  readonly maxOpsPerTxn?: number
  /** Bytes of values per transaction, under etcd's 1.5 MiB request limit. @default 1_000_000 */
  readonly maxBytesPerTxn?: number
  /**
   * Transactions in flight at once. A second one starts only while a full transaction's worth of
   * writes is waiting; otherwise writes wait for the one in flight and are grouped. @default 3
   */
  readonly maxInFlight?: number
}

interface Pending {
  readonly write: TxnWrite
  readonly keys: readonly string[]
  readonly compareKeys: readonly string[]
  /** A write with a range compare is committed alone (its range could cover a neighbour's key). */
  readonly exclusive: boolean
  readonly size: number
  readonly resolve: (outcome: TxnOutcome) => void
  readonly reject: (error: unknown) => void
}

const keyOf = (o: IRequestOp): string =>
  (o.request_put?.key ?? o.request_delete_range?.key ?? o.request_range?.key ?? Buffer.alloc(0)).toString()
const sizeOf = (o: IRequestOp): number => (o.request_put?.value?.length ?? 0) + keyOf(o).length

/**
 * Group commit for independent writes. While transactions are in flight, new writes queue up and
 * go out together as one transaction. When a grouped transaction fails (some compare did not hold,
 * or etcd refused the request), each of its writes is retried alone so that one conflict or one
 * oversized write never fails its neighbours.
 */
export class TxnBatcher {
  readonly #etcd: Etcd3
  readonly #maxOps: number
  readonly #maxBytes: number
  readonly #maxInFlight: number
  #queue: Pending[] = []
  #inFlight = 0

  constructor(etcd: Etcd3, options: TxnBatcherOptions = {}) {
    this.#etcd = etcd
    this.#maxOps = options.maxOpsPerTxn ?? 128
    this.#maxBytes = options.maxBytesPerTxn ?? 1_000_000
    this.#maxInFlight = options.maxInFlight ?? 3
  }

  commit(write: TxnWrite): Promise<TxnOutcome> {
    return new Promise((resolve, reject) => {
      const size = write.ops.reduce((total, o) => total + sizeOf(o), 0)
      this.#queue.push({
        write,
        keys: write.ops.map(keyOf),
        compareKeys: write.compares.map((c) => (c.key ?? Buffer.alloc(0)).toString()),
        exclusive: write.compares.some((c) => c.range_end !== undefined),
        size,
        resolve,
        reject,
      })
      this.#pump()
    })
  }

  #pump(): void {
    while (
      this.#queue.length > 0 &&
      (this.#inFlight === 0 || (this.#inFlight < this.#maxInFlight && this.#fullBatchWaiting()))
    ) {
      const batch = this.#take()
      this.#inFlight++
      void this.#run(batch).finally(() => {
        this.#inFlight--
        this.#pump()
      })
    }
  }

  #fullBatchWaiting(): boolean {
    let ops = 0
    for (const pending of this.#queue) {
      ops += Math.max(pending.write.ops.length, pending.write.compares.length)
      if (ops >= this.#maxOps) return true
    }
    return false
  }

  /**
   * Takes queued writes in order until a limit is reached or two writes touch the same key: one
   * writing what another writes or compares would see a compare evaluated before the other's write.
   */
  #take(): Pending[] {
    const batch: Pending[] = []
    const written = new Set<string>()
    const compared = new Set<string>()
    let compares = 0
    let ops = 0
    let bytes = 0
    const rest: Pending[] = []
    for (const pending of this.#queue) {
      const fits =
        batch.length === 0 ||
        (!pending.exclusive &&
          !batch[0]!.exclusive &&
          compares + pending.write.compares.length <= this.#maxOps &&
          ops + pending.write.ops.length <= this.#maxOps &&
          bytes + pending.size <= this.#maxBytes &&
          pending.keys.every((key) => !written.has(key) && !compared.has(key)) &&
          pending.compareKeys.every((key) => !written.has(key)))
      if (fits && rest.length === 0) {
        batch.push(pending)
        compares += pending.write.compares.length
        ops += pending.write.ops.length
        bytes += pending.size
        for (const key of pending.keys) written.add(key)
        for (const key of pending.compareKeys) compared.add(key)
      } else rest.push(pending)
    }
    this.#queue = rest
    return batch
  }

  async #run(batch: Pending[]): Promise<void> {
    try {
      const response = await this.#etcd.kv.txn({
        compare: batch.flatMap((p) => p.write.compares),
        success: batch.flatMap((p) => p.write.ops),
      })
      const revision = Number(response.header.revision)
      if (response.succeeded || batch.length === 1) {
        for (const pending of batch) pending.resolve({ succeeded: response.succeeded, revision })
        return
      }
    } catch (error) {
      // etcd refused the request itself (too many operations, too large): one write may be the
      // cause, so each is tried alone and only that one fails; any other error fails them all.
      if (!(error instanceof GRPCInvalidArgumentError) || batch.length === 1) {
        for (const pending of batch) pending.reject(error)
        return
      }
    }
    await Promise.all(
      batch.map(async (pending) => {
        try {
          const response = await this.#etcd.kv.txn({
            compare: [...pending.write.compares],
            success: [...pending.write.ops],
          })
          pending.resolve({ succeeded: response.succeeded, revision: Number(response.header.revision) })
        } catch (error) {
          pending.reject(error)
        }
      }),
    )
  }
}
