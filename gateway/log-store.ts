import { ClassicLevel } from 'classic-level'
import { mkdir } from 'node:fs/promises'
import { DeliverPolicy } from '@nats-io/jetstream'
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream'
import type { Connections } from '../runtime/connections.ts'
import { keys, RUN_LOG, streams, subjects } from '../runtime/keys.ts'
import { decodeLogMessage } from '../runtime/log-lines.ts'
import type { Logger } from '../runtime/logger.ts'
import type { LogEnd, LogLine } from '../definitions/objects.ts'
import { readKeys } from '../runtime/etcd-ops.ts'
import { unavailable } from '../runtime/errors.ts'
import { subscribeLog, type LogFilter, type LogSubscriber } from './log-subscription.ts'

export type { LogFilter, LogSubscriber } from './log-subscription.ts'

/** What `GET /logs` asks for: at least one of runid, driver and pipeline. */
export interface LogQuery {
  readonly runid?: string
  readonly driver?: string
  readonly pipeline?: string
  readonly after?: number
  readonly limit?: number
}

/** Calls back with each line and end of a run once it is stored. */
type LogListener = { readonly filter: LogFilter; readonly item: (item: LogLine | LogEnd) => void }

const SEP = '\u0000'
const seqKey = (seq: number): string => String(seq).padStart(16, '0')
const META_LAST_SEQ = `m${SEP}lastSeq`
const runKey = (runid: string, seq: number): string => `r${SEP}${runid}${SEP}${seqKey(seq)}`
const driverKey = (driver: string, runid: string, seq: number): string =>
  `d${SEP}${driver}${SEP}${runid}${SEP}${seqKey(seq)}`
const pipelineKey = (pipeline: string, runid: string, seq: number): string =>
  `p${SEP}${pipeline}${SEP}${runid}${SEP}${seqKey(seq)}`
const endKey = (runid: string, driver: string): string => `e${SEP}${runid}${SEP}${driver}`
/** Sequence index: the keys each stream message was stored under, so what the stream dropped can be dropped here too. */
const seqIndexKey = (seq: number): string => `s${SEP}${seqKey(seq)}`
const PRUNE_INTERVAL_MS = 10 * 60_000
/** How long the index may stay behind the log stream without a new line before it follows the stream again. */
const STALL_CHECK_MS = 10_000
const upper = (prefix: string): string => prefix + '\uffff'

/**
 * The gateway's log index: lines from the JetStream log stream, materialised into LevelDB keyed by
 * run then sequence (plus driver and pipeline indexes), and fanned out to live listeners. The last
 * applied sequence is stored in the same batch as the lines, so a restart resumes without a gap.
 */
export class LogStore {
  readonly #db: ClassicLevel<string, string>
  readonly #connections: Connections
  readonly #logger: Logger
  readonly #listeners = new Map<string, Set<LogListener>>()
  #messages: ConsumerMessages | undefined
  #pruneTimer: NodeJS.Timeout | undefined
  #stallTimer: NodeJS.Timeout | undefined
  #lastSeq = 0
  #closed = false
  #running: Promise<void> | undefined
  #waiters: { seq: number; resolve: () => void }[] = []
  /** Ends the pause before following the log stream again (on close). */
  #stopWaiting: (() => void) | undefined

  private constructor(db: ClassicLevel<string, string>, connections: Connections, logger: Logger) {
    this.#db = db
    this.#connections = connections
    this.#logger = logger
  }

  static async open(directory: string, connections: Connections, logger: Logger): Promise<LogStore> {
    await mkdir(directory, { recursive: true })
    const db = new ClassicLevel<string, string>(directory, { valueEncoding: 'utf8' })
    await db.open()
    const store = new LogStore(db, connections, logger)
    store.#lastSeq = Number((await db.get(META_LAST_SEQ)) ?? 0)
    await store.#follow()
    const prune = (): void => {
      store.#pruneTimer = setTimeout(
        () =>
          void store
            .prune()
            .catch((error: unknown) => logger.warn('pruning the log index failed', { error: String(error) }))
            .finally(prune),
        PRUNE_INTERVAL_MS,
      )
      store.#pruneTimer.unref()
    }
    await store.prune().catch((error: unknown) => logger.warn('pruning the log index failed', { error: String(error) }))
    prune()
    store.#watchStalls()
    return store
  }

  /**
   * A consumer can stop delivering without an error after the NATS node it lived on is lost: when
   * no line was stored for a while yet the stream holds later ones, the index follows it again
   * from the last stored line.
   */
  #watchStalls(): void {
    let seen = this.#lastSeq
    /** The stream's last sequence when the previous check found the index behind it (0: it was not). */
    let behindAt = 0
    const check = async (): Promise<void> => {
      if (this.#closed || this.#lastSeq !== seen) return void (behindAt = 0)
      const last = (await this.#connections.jsm.streams.info(streams.logs)).state.last_seq
      // Behind at two checks in a row with no line stored between: a line published just now is not a stall.
      const stalled = behindAt > this.#lastSeq && last > this.#lastSeq && this.#lastSeq === seen
      behindAt = last > this.#lastSeq ? last : 0
      if (stalled && !this.#closed) {
        behindAt = 0
        this.#logger.warn('the log index stopped following the log stream; following it again', {
          stored: this.#lastSeq,
          stream: last,
        })
        await this.#messages?.close()
      }
    }
    const tick = (): void => {
      void check()
        .catch(() => {})
        .finally(() => {
          seen = this.#lastSeq
          if (!this.#closed) {
            this.#stallTimer = setTimeout(tick, STALL_CHECK_MS)
            this.#stallTimer.unref()
          }
        })
    }
    this.#stallTimer = setTimeout(tick, STALL_CHECK_MS)
    this.#stallTimer.unref()
  }

  /**
   * Drops what the log stream no longer holds (its retention removed it), so the index keeps the
   * same history as the stream. Returns how many stream messages were dropped.
   */
  async prune(): Promise<number> {
    const first = (await this.#connections.jsm.streams.info(streams.logs)).state.first_seq
    let dropped = 0
    for (;;) {
      const operations: { type: 'del'; key: string }[] = []
      for await (const [key, value] of this.#db.iterator({ gte: seqIndexKey(0), lt: seqIndexKey(first), limit: 500 })) {
        operations.push({ type: 'del', key })
        for (const stored of JSON.parse(value) as string[]) {
          // An end marker's key is per run and driver: keep it if a later marker replaced this one.
          if (
            stored.startsWith('e') &&
            Number((JSON.parse((await this.#db.get(stored)) ?? '{}') as { seq?: number }).seq ?? 0) >= first
          )
            continue
          operations.push({ type: 'del', key: stored })
        }
        dropped++
      }
      if (operations.length === 0 || this.#closed) return dropped
      await this.#db.batch(operations)
    }
  }

  get lastSeq(): number {
    return this.#lastSeq
  }

  async #follow(): Promise<void> {
    const consumer = await this.#connections.js.consumers.get(streams.logs, {
      filter_subjects: subjects.allLogs(),
      ...(this.#lastSeq > 0
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.#lastSeq + 1 }
        : { deliver_policy: DeliverPolicy.All }),
    })
    const messages = await consumer.consume({ max_messages: 1000 })
    if (this.#closed) return void (await messages.close())
    this.#messages = messages
    this.#running = this.#apply(messages)
  }

  async #apply(messages: ConsumerMessages): Promise<void> {
    let batch: JsMsg[] = []
    let flushing: Promise<void> = Promise.resolve()
    const flush = async (): Promise<void> => {
      const taken = batch
      batch = []
      if (taken.length > 0) await this.#write(taken)
    }
    try {
      for await (const message of messages) {
        if (message.seq <= this.#lastSeq) continue
        batch.push(message)
        if (batch.length >= 256 || message.info.pending === 0) {
          await flushing
          flushing = flush().catch((error) => {
            // Nothing after the last stored sequence is lost: start over from it.
            this.#logger.error('log store write failed; re-reading the log stream from the last stored line', {
              error: String(error),
            })
            batch = []
            void messages.close()
          })
        }
      }
    } catch (error) {
      if (!this.#closed)
        this.#logger.warn('reading the log stream failed; following it again from the last stored line', {
          error: String(error),
        })
    }
    await flushing
    await flush().catch(() => {})
    await this.#followAgain()
  }

  /** Follows the log stream again after its consumer ended, for as long as it takes (an outage). */
  async #followAgain(): Promise<void> {
    for (let attempt = 0; !this.#closed; attempt++) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(500 * 2 ** attempt, 5000))
        this.#stopWaiting = () => (clearTimeout(timer), resolve())
      })
      this.#stopWaiting = undefined
      if (this.#closed) return
      try {
        return await this.#follow()
      } catch (error) {
        this.#logger.warn('following the log stream failed; retrying', { error: String(error), attempt })
      }
    }
  }

  async #write(messages: readonly JsMsg[]): Promise<void> {
    const operations: { type: 'put'; key: string; value: string }[] = []
    const lines: LogLine[] = []
    const ends: LogEnd[] = []
    for (const message of messages) {
      const parsed = decodeLogMessage(message)
      if (!parsed) continue
      if ('success' in parsed) {
        ends.push(parsed)
        operations.push({ type: 'put', key: endKey(parsed.runid, parsed.driver), value: JSON.stringify(parsed) })
        operations.push({
          type: 'put',
          key: seqIndexKey(parsed.seq),
          value: JSON.stringify([endKey(parsed.runid, parsed.driver)]),
        })
        continue
      }
      const value = JSON.stringify(parsed)
      lines.push(parsed)
      const stored = [
        runKey(parsed.runid, parsed.seq),
        driverKey(parsed.driver, parsed.runid, parsed.seq),
        ...(parsed.pipeline ? [pipelineKey(parsed.pipeline, parsed.runid, parsed.seq)] : []),
      ]
      for (const key of stored) operations.push({ type: 'put', key, value })
      operations.push({ type: 'put', key: seqIndexKey(parsed.seq), value: JSON.stringify(stored) })
    }
    const lastSeq = messages.at(-1)!.seq
    operations.push({ type: 'put', key: META_LAST_SEQ, value: String(lastSeq) })
    await this.#db.batch(operations)
    this.#lastSeq = lastSeq
    for (const line of lines) for (const listener of this.#listenersOf(line.runid, line.driver)) listener.item(line)
    for (const end of ends) for (const listener of this.#listenersOf(end.runid, end.driver)) listener.item(end)
    this.#waiters = this.#waiters.filter((w) => (w.seq <= lastSeq ? (w.resolve(), false) : true))
  }

  #listenersOf(runid: string, driver: string): LogListener[] {
    const set = this.#listeners.get(runid)
    if (!set) return []
    return [...set].filter((l) => l.filter.driver === undefined || l.filter.driver === driver || driver === RUN_LOG)
  }

  /** Resolves once every message up to `seq` is stored (used after a publish through this gateway). */
  waitFor(seq: number, timeoutMs = 5000): Promise<boolean> {
    if (seq <= this.#lastSeq) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      this.#waiters.push({ seq, resolve: () => (clearTimeout(timer), resolve(true)) })
    })
  }

  /** Lines in stream order, by the most selective index the query allows. */
  async query(query: LogQuery): Promise<LogLine[]> {
    return (await this.queryPage(query)).lines
  }

  /** As `query`, with at most `maxBytes` of stored lines (at least one); `more` when the bytes cut it short. */
  async queryPage(query: LogQuery & { maxBytes?: number }): Promise<{ lines: LogLine[]; more: boolean }> {
    let prefix: string
    if (query.driver && query.runid) prefix = `d${SEP}${query.driver}${SEP}${query.runid}${SEP}`
    else if (query.runid) prefix = `r${SEP}${query.runid}${SEP}`
    else if (query.pipeline) prefix = `p${SEP}${query.pipeline}${SEP}`
    else if (query.driver) prefix = `d${SEP}${query.driver}${SEP}`
    else throw new Error('a log query needs runid, driver or pipeline')
    const limit = query.limit ?? 10_000
    const maxBytes = query.maxBytes ?? Number.MAX_SAFE_INTEGER
    const lines: LogLine[] = []
    let bytes = 0
    // Keys of one run end with the sequence: a resume seeks to it instead of reading what it skips.
    const from = query.runid && query.after ? { gt: prefix + seqKey(query.after) } : { gte: prefix }
    for await (const value of this.#db.values({ ...from, lt: upper(prefix) })) {
      const line = JSON.parse(value) as LogLine
      if (query.pipeline && line.pipeline !== query.pipeline) continue
      if (query.driver && line.driver !== query.driver) continue
      if (query.after !== undefined && line.seq <= query.after) continue
      if (lines.length > 0 && bytes + value.length > maxBytes) return { lines, more: true }
      lines.push(line)
      bytes += value.length
      if (lines.length >= limit) break
    }
    return { lines, more: false }
  }

  /** A run's (or one driver's) lines after `after`, at most `maxLines` or `maxBytes` of them, from one snapshot of the index. */
  async page(
    filter: LogFilter,
    after: number,
    maxLines: number,
    maxBytes: number,
  ): Promise<{ lines: LogLine[]; more: boolean }> {
    const prefix = filter.driver ? `d${SEP}${filter.driver}${SEP}${filter.runid}${SEP}` : `r${SEP}${filter.runid}${SEP}`
    const lines: LogLine[] = []
    let bytes = 0
    for await (const value of this.#db.values({ gt: prefix + seqKey(after), lt: upper(prefix), limit: maxLines })) {
      lines.push(JSON.parse(value) as LogLine)
      bytes += value.length
      if (bytes >= maxBytes) return { lines, more: true }
    }
    return { lines, more: lines.length >= maxLines }
  }

  /** The end markers recorded for a run (one per driver). */
  async ends(runid: string): Promise<LogEnd[]> {
    const prefix = `e${SEP}${runid}${SEP}`
    const result: LogEnd[] = []
    for await (const value of this.#db.values({ gte: prefix, lt: upper(prefix) }))
      result.push(JSON.parse(value) as LogEnd)
    return result
  }

  /**
   * True when the index holds a line or an end of the run, or the run is a resource's current run
   * (it may have no line yet). Throws `unavailable` when etcd cannot answer.
   */
  async known(runid: string): Promise<boolean> {
    for (const prefix of [`r${SEP}${runid}${SEP}`, `e${SEP}${runid}${SEP}`])
      for await (const _ of this.#db.keys({ gte: prefix, lt: upper(prefix), limit: 1 })) return true
    try {
      const { values } = await readKeys(this.#connections.etcd, [keys.run(runid)])
      return values[0] !== undefined
    } catch (error) {
      throw unavailable(`etcd is unavailable: cannot tell whether run ${runid} exists; retry shortly`, error)
    }
  }

  /** Calls back with each line and end of the run (of the driver, and the run's own) once it is stored. */
  listen(filter: LogFilter, item: (item: LogLine | LogEnd) => void): () => void {
    const listener: LogListener = { filter, item }
    let set = this.#listeners.get(filter.runid)
    if (!set) this.#listeners.set(filter.runid, (set = new Set()))
    set.add(listener)
    return () => {
      set.delete(listener)
      if (set.size === 0 && this.#listeners.get(filter.runid) === set) this.#listeners.delete(filter.runid)
    }
  }

  /**
   * Backlog then live, with no gap and no duplicate, page by page (see `subscribeLog`). An unknown
   * run is refused (404), as is one etcd cannot tell about now (503). Returns the unsubscribe.
   */
  subscribe(filter: LogFilter, subscriber: LogSubscriber): () => void {
    return subscribeLog(this, filter, subscriber)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#pruneTimer)
    clearTimeout(this.#stallTimer)
    this.#stopWaiting?.()
    // A restart of the consumer in flight replaces #running: wait for the last one.
    let running: Promise<void> | undefined
    do {
      running = this.#running
      await this.#messages?.close()
      await running?.catch(() => {})
    } while (running !== this.#running)
    await this.#db.close()
  }
}
