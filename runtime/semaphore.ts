/** A counting semaphore: at most `limit` holders at once, the rest wait in order. */
export class Semaphore {
  #available: number
  readonly #waiting: (() => void)[] = []

  constructor(limit: number) {
    this.#available = limit
  }

  async acquire(): Promise<void> {
    if (this.#available > 0) {
      this.#available--
      return
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve))
  }

  release(): void {
    const next = this.#waiting.shift()
    if (next) next()
    else this.#available++
  }
}
