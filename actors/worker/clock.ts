/** Time as the actor host sees it: injected so tests advance it instead of sleeping. */
export interface Clock {
  now(): number
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => {
    const handle = setTimeout(callback, Math.min(ms, 2 ** 31 - 1))
    handle.unref?.()
    return handle
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
}

/** A clock that only moves when told to; `advance` fires what became due, in due order. */
export class ManualClock implements Clock {
  #now: number
  #next = 0
  readonly #timers = new Map<number, { at: number; callback: () => void }>()

  constructor(start = Date.now()) {
    this.#now = start
  }

  now(): number {
    return this.#now
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const id = ++this.#next
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), callback })
    if (ms <= 0) queueMicrotask(() => this.#fire())
    return id
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number)
  }

  advance(ms: number): void {
    this.#now += ms
    this.#fire()
  }

  #fire(): void {
    const due = [...this.#timers].filter(([, t]) => t.at <= this.#now).sort((a, b) => a[1].at - b[1].at)
    for (const [id, timer] of due) {
      this.#timers.delete(id)
      timer.callback()
    }
  }
}
