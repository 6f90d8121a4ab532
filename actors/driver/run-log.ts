import { formatWithOptions } from 'node:util'
import { headers as natsHeaders } from '@nats-io/transport-node'
import type { JetStreamClient } from '@nats-io/jetstream'
import { headers, subjects } from '../../runtime/keys.ts'

const MAX_LINE = 64 * 1024

/**
 * The log of one run: every line is published to the log stream in call order; `end()` waits for
 * all of them to be stored and then publishes the end marker, so the marker follows the last line.
 */
export class RunLog {
  readonly #js: JetStreamClient
  readonly #subject: string
  readonly #pipeline: string | undefined
  readonly #step: string | undefined
  #pending: Promise<unknown>[] = []
  #failed: unknown

  constructor(js: JetStreamClient, driver: string, runid: string, pipeline?: string, step?: string) {
    this.#js = js
    this.#subject = subjects.log(driver, runid)
    this.#pipeline = pipeline
    this.#step = step
  }

  write(stream: string, args: readonly unknown[]): void {
    let message = formatWithOptions({ colors: false, depth: 4 }, ...args)
    if (message.length > MAX_LINE) message = message.slice(0, MAX_LINE) + ' …[truncated]'
    const body = JSON.stringify({ message, stream, timestamp: new Date().toISOString(), ...(this.#pipeline ? { pipeline: this.#pipeline } : {}), ...(this.#step ? { step: this.#step } : {}) })
    this.#pending.push(this.#js.publish(this.#subject, body).catch((error: unknown) => (this.#failed = error)))
  }

  /** Resolves once every line written so far is stored; throws if one could not be. */
  async flush(): Promise<void> {
    const pending = this.#pending
    this.#pending = []
    await Promise.all(pending)
    if (this.#failed !== undefined) {
      const error = this.#failed
      this.#failed = undefined
      throw error
    }
  }

  async end(success: boolean, message: string): Promise<void> {
    await this.flush()
    const h = natsHeaders()
    h.set(headers.logEnd, '1')
    await this.#js.publish(this.#subject, JSON.stringify({ success, message, timestamp: new Date().toISOString() }), { headers: h })
  }
}
