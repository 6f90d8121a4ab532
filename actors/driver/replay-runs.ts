import type { JsMsg } from '@nats-io/jetstream'
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream'
import type { NatsConnections } from '../../runtime/nats-connection.ts'
import { streams } from '../../runtime/keys.ts'
import type { Logger } from '../../runtime/logger.ts'
import type { Semaphore } from '../../runtime/semaphore.ts'
import { finishReplay, replayBuckets, replayProgress, saveReplayCount, type Replay } from '../../runtime/replays.ts'

export interface ReplayFollowerOptions {
  readonly connections: NatsConnections
  readonly driver: string
  /** This instance's id: its progress count is kept under it. */
  readonly instance: string
  readonly logger: Logger
  /** The driver's units of concurrency, shared with its live work. */
  readonly running: Semaphore
  /** Handles one replayed message (and acks it). */
  handle(message: JsMsg, replay: Replay): Promise<void>
}

/** How often a replayed message in hand tells the server it is still worked on (at most). */
const WORKING_EVERY_MS = 5000

/**
 * Follows the replays addressed to a driver (the replays bucket): every instance works through a
 * replay's consumer, counts what it handled under its own key (the progress is their sum), and
 * whoever sees the range exhausted marks the replay done and removes its consumer. A replay that
 * ends otherwise (cancelled, expired) is dropped: nothing more of it is fetched.
 */
export class ReplayFollower {
  readonly #options: ReplayFollowerOptions
  readonly #active = new Map<string, Promise<void>>()
  /** Replays followed now that ended elsewhere: their loops stop. */
  readonly #ended = new Set<string>()
  #stopWatch: (() => void) | undefined
  #closing = false

  constructor(options: ReplayFollowerOptions) {
    this.#options = options
  }

  async start(): Promise<void> {
    const { replays } = await replayBuckets(this.#options.connections)
    const watch = await replays.watch()
    this.#stopWatch = () => watch.stop()
    void (async () => {
      try {
        for await (const entry of watch) {
          if (entry.operation === 'PUT') this.#consider(entry.string())
          else if (this.#active.has(entry.key)) this.#ended.add(entry.key)
        }
      } catch (error) {
        this.#options.logger.warn('watching replays failed', { error: String(error) })
      }
    })()
  }

  #consider(value: string): void {
    let replay: Replay
    try {
      replay = JSON.parse(value) as Replay
    } catch {
      return
    }
    if (replay.driver !== this.#options.driver) return
    if (replay.status !== 'running') {
      if (this.#active.has(replay.id)) this.#ended.add(replay.id)
      return
    }
    if (this.#closing || this.#active.has(replay.id)) return
    const work = this.#follow(replay)
      .catch((error: unknown) => {
        // Another instance finished the replay, it was cancelled or it expired: its consumer is gone.
        const gone = error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound
        if (!gone && !this.#ended.has(replay.id))
          this.#options.logger.warn('replay failed; another instance or a restart resumes it', {
            replay: replay.id,
            error: String(error),
          })
      })
      .finally(() => {
        this.#active.delete(replay.id)
        this.#ended.delete(replay.id)
      })
    this.#active.set(replay.id, work)
  }

  async #follow(replay: Replay): Promise<void> {
    const { connections, running, handle } = this.#options
    const consumer = await connections.js.consumers.get(streams.events, replay.consumer).catch(() => undefined)
    if (!consumer) return
    let handled = 0
    let saved = 0
    const save = async (): Promise<void> => {
      if (handled === saved) return
      const count = handled
      await saveReplayCount(connections, replay.id, this.#options.instance, count)
      saved = count
    }
    const saver = setInterval(() => void save().catch(() => {}), 250)
    const ended = (): boolean => this.#closing || this.#ended.has(replay.id)
    // A message in hand (waiting for a unit of concurrency, or running) keeps its ack wait and the
    // consumer's idle timer from running out.
    const workingEvery = Math.max(200, Math.min(WORKING_EVERY_MS, (replay.idleTimeoutMs ?? 3_600_000) / 3))
    try {
      while (!ended()) {
        let beyond = false
        let got = 0
        // One at a time: a message waiting in a client buffer would run out its ack wait.
        const batch = await consumer.fetch({ max_messages: 1, expires: 1000 })
        for await (const message of batch) {
          got++
          if (message.seq > replay.untilSequence) {
            beyond = true
            message.ack()
            continue
          }
          const working = setInterval(() => message.working(), workingEvery)
          await running.acquire()
          try {
            await handle(message, replay)
            handled++
          } catch (error) {
            if (ended()) break
            // This message comes back; the replay goes on.
            this.#options.logger.warn('a replayed message failed; it will be redelivered', {
              replay: replay.id,
              seq: message.seq,
              error: String(error),
            })
            message.nak(1000)
          } finally {
            clearInterval(working)
            running.release()
          }
          if (ended()) break
        }
        if (ended()) break
        if (beyond || got === 0) {
          const info = await consumer.info()
          // num_pending is an estimate on nats-server 2.9: the counts of every instance settle it.
          const exhausted =
            beyond ||
            info.num_pending === 0 ||
            (await save().then(() => replayProgress(connections, replay.id))).delivered >= replay.total
          if (info.num_ack_pending === 0 && exhausted) {
            await save()
            await finishReplay(connections, replay.id)
            return
          }
        }
      }
    } finally {
      clearInterval(saver)
      await save().catch(() => {})
    }
  }

  async close(): Promise<void> {
    this.#closing = true
    this.#stopWatch?.()
    await Promise.allSettled([...this.#active.values()])
  }
}
