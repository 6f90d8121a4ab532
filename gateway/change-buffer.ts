/** What a change buffer needs of a change. */
export interface BufferedChange {
  readonly revision: number
  readonly bytes: number
}

/**
 * Changes in arrival order, each addressed by a sequence number that never repeats (so a reader
 * keeps its place while older changes are dropped), with the bytes they hold.
 */
export class ChangeBuffer<T extends BufferedChange> {
  readonly #items: (T | undefined)[] = []
  #head = 0
  #firstSeq = 0
  #bytes = 0

  get bytes(): number {
    return this.#bytes
  }

  /** The sequence of the oldest change held. */
  get firstSeq(): number {
    return this.#firstSeq
  }

  /** The sequence the next change pushed gets. */
  get endSeq(): number {
    return this.#firstSeq + this.#items.length - this.#head
  }

  get oldest(): T | undefined {
    return this.#items[this.#head]
  }

  push(change: T): void {
    this.#items.push(change)
    this.#bytes += change.bytes
  }

  /** The change at `seq`, if still held. */
  at(seq: number): T | undefined {
    return seq < this.#firstSeq ? undefined : this.#items[this.#head + seq - this.#firstSeq]
  }

  /** The sequence of the first change held with a revision over `revision` (`endSeq` if none). */
  seqAfter(revision: number): number {
    let low = this.#head
    let high = this.#items.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (this.#items[middle]!.revision <= revision) low = middle + 1
      else high = middle
    }
    return this.#firstSeq + low - this.#head
  }

  /** Drops the oldest change and returns it. */
  shift(): T | undefined {
    const change = this.#items[this.#head]
    if (!change) return undefined
    this.#items[this.#head++] = undefined
    this.#firstSeq++
    this.#bytes -= change.bytes
    if (this.#head === this.#items.length) {
      this.#items.length = 0
      this.#head = 0
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items.splice(0, this.#head)
      this.#head = 0
    }
    return change
  }
}
