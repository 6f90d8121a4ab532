import { randomUUID } from 'node:crypto'
import { errors } from '@nats-io/transport-node'
import type { NatsConnections } from '../../runtime/nats-connection.ts'
import type { EventReply } from '../../runtime/inbox.ts'
import { subjects } from '../../runtime/keys.ts'
import { backoffMs } from '../../runtime/backoff.ts'
import { ConveyorError } from '../../runtime/errors.ts'
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

/**
 * The driver's side of the work protocol: claims, renewals and reports, each a core NATS request
 * to the worker that owns the resource's actor, retried until it is answered (every request is
 * idempotent by its token, so a repeat is harmless).
 */
export class WorkClient {
  readonly #nats: NatsConnections
  readonly #driver: string
  readonly #logger: Logger
  readonly #closing: AbortSignal
  readonly #shutdown: AbortSignal

  /** `closing`: take no new work; `shutdown`: the grace period is over, stop even what finishes work. */
  constructor(nats: NatsConnections, driver: string, logger: Logger, closing: AbortSignal, shutdown: AbortSignal) {
    this.#nats = nats
    this.#driver = driver
    this.#logger = logger
    this.#closing = closing
    this.#shutdown = shutdown
  }

  claim(
    type: string,
    name: string,
    work: WorkRef,
    token: string,
    holder: string,
    leaseMs: number,
    replay = false,
  ): Promise<ClaimAnswer> {
    return this.#ask(type, name, { type: WorkEvent.claim, work, token, holder, leaseMs, ...(replay ? { replay } : {}) })
  }

  /** Renews a claim once (a heartbeat); undefined when no answer came in time. `leaseMs: 0` releases it. */
  async renew(
    type: string,
    name: string,
    work: WorkRef,
    token: string,
    leaseMs: number,
  ): Promise<RenewAnswer | undefined> {
    return await this.#once<RenewAnswer>(type, name, { type: WorkEvent.renew, work, token, leaseMs })
  }

  /**
   * Reports an outcome, sending it again until the actor answers, even while the driver closes
   * (the work is done; losing its outcome would run it again), until the shutdown grace is over:
   * then the message goes unacked, and the claim's next holder runs the work again.
   */
  report(
    type: string,
    name: string,
    work: WorkRef,
    token: string,
    outcome: Pick<ReportRequest, 'success' | 'retryable' | 'message' | 'data'>,
  ): Promise<ReportAnswer> {
    return this.#ask(type, name, { type: WorkEvent.report, work, token, ...outcome }, this.#shutdown)
  }

  async #ask<T>(
    type: string,
    name: string,
    request: Record<string, unknown>,
    stop: AbortSignal = this.#closing,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      if (stop.aborted) throw new Error('the driver is closing')
      try {
        const answer = await this.#once<T>(type, name, request)
        if (answer !== undefined) return answer
        this.#logger.warn('no answer from the actor yet; asking again', {
          resource: `${type}/${name}`,
          request: request.type,
        })
      } catch (error) {
        if (error instanceof ConveyorError && error.code === 'forbidden') throw error
        this.#logger.warn('asking the actor failed; retrying', {
          resource: `${type}/${name}`,
          request: request.type,
          error: String(error),
        })
      }
      await sleep(backoffMs(attempt, { baseMs: 200, maxMs: 5000 }), stop)
    }
  }

  /** One request; undefined when no worker answered in time (none owns the partition yet, or it is overloaded). */
  async #once<T>(type: string, name: string, request: Record<string, unknown>): Promise<T | undefined> {
    let reply: EventReply
    try {
      const message = await this.#nats.nats.request(
        subjects.work(type, name, this.#driver),
        JSON.stringify({ ...request, id: randomUUID() }),
        { timeout: ANSWER_TIMEOUT_MS },
      )
      reply = message.json<EventReply>()
    } catch (error) {
      // No owner yet (no responders), none in time, or a reconnect: ask again.
      if (error instanceof errors.TimeoutError || error instanceof errors.RequestError) return undefined
      throw error
    }
    if (reply.status === 403) throw new ConveyorError('forbidden', String(reply.body.detail ?? 'forbidden'))
    if (reply.status !== 200) throw new Error(`the actor answered ${reply.status}: ${String(reply.body.detail ?? '')}`)
    const { id: _id, ...answer } = reply.body
    return answer as T
  }
}
