import { formatWithOptions } from 'node:util'
import type { JetStreamClient } from '@nats-io/jetstream'
import { headers as natsHeaders } from '@nats-io/transport-node'
import { subjects } from '../../runtime/keys.ts'
import { encodeLogEnd, encodeLogLine } from '../../runtime/log-lines.ts'

/**
 * The log of one run: every line is published to the log stream in call order; `end()` waits for
 * all of them to be stored and then publishes the end marker, so the marker follows the last line.
 */
export class RunLog {
  readonly #js: JetStreamClient
  readonly #subject: string
  readonly #endId: string
  readonly #pipeline: string | undefined
  readonly #step: string | undefined
  #pending: Promise<unknown>[] = []
  #failed: unknown

  constructor(js: JetStreamClient, driver: string, runid: string, pipeline?: string, step?: string) {
    this.#js = js
    this.#subject = subjects.log(driver, runid)
    this.#endId = `${driver}:${runid}:end`
    this.#pipeline = pipeline
    this.#step = step
  }

  write(stream: string, args: readonly unknown[]): void {
    const message = formatWithOptions({ colors: false, depth: 4 }, ...args)
    const body = encodeLogLine({
      message,
      stream,
      ...(this.#pipeline ? { pipeline: this.#pipeline } : {}),
      ...(this.#step ? { step: this.#step } : {}),
    })
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

  /** Stores what is pending, then the end marker (one per run: a repeat inside the duplicate window is dropped). */
  async end(success: boolean, message: string): Promise<void> {
    await this.flush()
    const end = encodeLogEnd(success, message)
    const h = natsHeaders()
    for (const [name, value] of Object.entries(end.headers)) h.set(name, value)
    await this.#js.publish(this.#subject, end.body, { headers: h, msgID: this.#endId })
  }
}
