/** A counting semaphore: at most `limit` holders at once, the rest wait in order. */
export class Semaphore {
  #available: number
  readonly #waiting: (() => void)[] = []

  constructor(limit: number) {
    this.#available = limit
  }

  /** Resolves once a permit is held; rejects (holding none) if `signal` aborts first. */
  async acquire(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    if (this.#available > 0) {
      this.#available--
      return
    }
    await new Promise<void>((resolve, reject) => {
      const granted = (): void => {
        signal?.removeEventListener('abort', aborted)
        resolve()
      }
      const aborted = (): void => {
        const at = this.#waiting.indexOf(granted)
        if (at >= 0) this.#waiting.splice(at, 1)
        reject(signal!.reason as Error)
      }
      this.#waiting.push(granted)
      signal?.addEventListener('abort', aborted, { once: true })
    })
  }

  release(): void {
    const next = this.#waiting.shift()
    if (next) next()
    else this.#available++
  }
}
