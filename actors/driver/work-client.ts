import { randomUUID } from 'node:crypto'
import type { NatsConnections } from '../../runtime/nats-connection.ts'
import { ReplyInbox, sendToActor } from '../../runtime/inbox.ts'
import { backoffMs } from '../../runtime/backoff.ts'
import type { Logger } from '../../runtime/logger.ts'
import {
  WorkEvent,
  type ClaimAnswer,
  type RenewAnswer,
  type ReportAnswer,
  type ReportRequest,
  type WorkRef,
} from '../../definitions/work.ts'

/** How long one request waits for the actor's answer before it is sent again. */
const ANSWER_TIMEOUT_MS = 5000

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    function done(): void {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })

/** The driver's side of the work protocol: claims, renewals and reports sent to a resource's actor, each retried until it is answered. */
export class WorkClient {
  readonly #nats: NatsConnections
  readonly #replies: ReplyInbox
  readonly #logger: Logger
  readonly #closing: AbortSignal

  constructor(nats: NatsConnections, logger: Logger, closing: AbortSignal) {
    this.#nats = nats
    this.#replies = new ReplyInbox(nats.nats)
    this.#logger = logger
    this.#closing = closing
  }

  claim(type: string, name: string, work: WorkRef, token: string, holder: string, leaseMs: number, replay = false): Promise<ClaimAnswer> {
    return this.#ask(type, name, { type: WorkEvent.claim, work, token, holder, leaseMs, ...(replay ? { replay } : {}) }, true)
  }

  /** Renews a claim once (a heartbeat); undefined when no answer came in time. `leaseMs: 0` releases it. */
  async renew(type: string, name: string, work: WorkRef, token: string, leaseMs: number): Promise<RenewAnswer | undefined> {
    return await this.#once<RenewAnswer>(type, name, { type: WorkEvent.renew, work, token, leaseMs })
  }

  /** Reports an outcome, sending it again until the actor answers, even while the driver closes (the work is done; losing its outcome would run it again). */
  report(type: string, name: string, work: WorkRef, token: string, outcome: Pick<ReportRequest, 'success' | 'retryable' | 'message' | 'data'>): Promise<ReportAnswer> {
    return this.#ask(type, name, { type: WorkEvent.report, work, token, ...outcome }, false)
  }

  async #ask<T>(type: string, name: string, request: Record<string, unknown>, stopOnClose: boolean): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      if (stopOnClose && this.#closing.aborted) throw new Error('the driver is closing')
      try {
        const answer = await this.#once<T>(type, name, request)
        if (answer !== undefined) return answer
        this.#logger.warn('no answer from the actor yet; asking again', { resource: `${type}/${name}`, request: request.type })
      } catch (error) {
        this.#logger.warn('asking the actor failed; retrying', { resource: `${type}/${name}`, request: request.type, error: String(error) })
      }
      await sleep(backoffMs(attempt, { baseMs: 200, maxMs: 5000 }), stopOnClose ? this.#closing : new AbortController().signal)
    }
  }

  async #once<T>(type: string, name: string, request: Record<string, unknown>): Promise<T | undefined> {
    const waiting = this.#replies.expect(ANSWER_TIMEOUT_MS)
    try {
      // A fresh id per message: JetStream would drop a resend with the same id, and no answer would come.
      await sendToActor(this.#nats.publisher, type, name, { ...request, type: String(request.type), id: randomUUID() }, waiting.subject)
    } catch (error) {
      waiting.cancel()
      throw error
    }
    const reply = await waiting.reply
    if (!reply) return undefined
    if (reply.status !== 200) throw new Error(`the actor answered ${reply.status}: ${String(reply.body.detail ?? '')}`)
    const { id: _id, ...answer } = reply.body
    return answer as T
  }

  close(): void {
    this.#replies.close()
  }
}
