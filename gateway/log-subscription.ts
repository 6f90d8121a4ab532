import type { LogEnd, LogLine } from '../definitions/objects.ts'
import { ConveyorError, notFound, unavailable } from '../runtime/errors.ts'
import { RUN_LOG } from '../runtime/keys.ts'

/** Who wants lines: one driver's run, or every driver of a run. */
export interface LogFilter {
  readonly runid: string
  readonly driver?: string
}

/** Where a subscription's lines go, and how fast they may come. */
export interface LogSubscriber {
  /** Only lines after this sequence (a resume). */
  readonly after?: number
  /** The run is known: lines follow. Called once, before any line. */
  open(): void
  /** The run is unknown (404) or cannot be checked now (503): nothing follows. */
  refuse(error: ConveyorError): void
  line(line: LogLine): void
  /** The run's (or the driver's) log ended: nothing follows. */
  end(end: LogEnd): void
  /** Reading the index failed: nothing follows; the client resumes after its last line. */
  fail(error: unknown): void
  /** False while the client cannot take more: later lines are then read from the index once `whenRoom` resolves. */
  hasRoom?(): boolean
  whenRoom?(): Promise<void>
}

/** What a subscription needs of the log index. */
export interface LogSource {
  /** True when the run has lines in the index or is a resource's current run. */
  known(runid: string): Promise<boolean>
  /** Lines after `after` in sequence order, at most `maxLines` of at most `maxBytes` in all; `more` when there may be more. */
  page(
    filter: LogFilter,
    after: number,
    maxLines: number,
    maxBytes: number,
  ): Promise<{ lines: LogLine[]; more: boolean }>
  ends(runid: string): Promise<LogEnd[]>
  /** Calls back with every line and end of the run stored from now on (after they are stored). */
  listen(filter: LogFilter, listener: (item: LogLine | LogEnd) => void): () => void
}

/** A page of the backlog: what one read of the index hands to the client at once. */
const PAGE_LINES = 512
const PAGE_BYTES = 256 * 1024
/** Live lines kept while the last page is read; past this the next page reads them from the index. */
const HELD_MAX = 4096

const isEnd = (item: LogLine | LogEnd): item is LogEnd => 'success' in item

/**
 * Backlog then live lines, with no gap and no duplicate, never holding more than a page: the
 * backlog is read from the index page by page while the client has room; while the last page is
 * read, live lines are held (they are stored before they are announced, so a line the page's
 * snapshot missed is among them); then lines go out as they are stored. A client that falls behind
 * goes back to reading pages from where it is.
 */
export function subscribeLog(source: LogSource, filter: LogFilter, subscriber: LogSubscriber): () => void {
  let cancelled = false
  let ended = false
  let live = false
  let lastSent = subscriber.after ?? 0
  let held: (LogLine | LogEnd)[] | undefined
  let overflowed = false
  // A driver's end ends that driver's stream; the run's end (a pipeline finished) ends every stream of the run.
  const relevant = (item: LogLine | LogEnd): boolean =>
    !isEnd(item) || item.driver === RUN_LOG || (filter.driver !== undefined && item.driver === filter.driver)
  const over = (): boolean => cancelled || ended

  const deliver = (item: LogLine | LogEnd): void => {
    if (over() || item.seq <= lastSent || !relevant(item)) return
    lastSent = item.seq
    if (isEnd(item)) {
      ended = true
      unlisten()
      subscriber.end(item)
    } else subscriber.line(item)
  }

  const catchUp = async (): Promise<void> => {
    for (;;) {
      if (over()) return
      if (subscriber.whenRoom) await subscriber.whenRoom()
      if (over()) return
      held = []
      overflowed = false
      // Ends first: an end read here has all its lines stored, so the page below has them.
      const ends = await source.ends(filter.runid)
      const page = await source.page(filter, lastSent, PAGE_LINES, PAGE_BYTES)
      const arrived = held
      held = undefined
      if (over()) return
      for (const line of page.lines) deliver(line)
      if (page.more || overflowed) continue
      arrived.sort((a, b) => a.seq - b.seq)
      for (const item of arrived) deliver(item)
      const end = ends.find(relevant)
      if (end) deliver({ ...end, seq: Math.max(end.seq, lastSent + 1) })
      if (!over()) live = true
      return
    }
  }

  const follow = (): void =>
    void catchUp().catch((error: unknown) => {
      if (over()) return
      cancelled = true
      unlisten()
      subscriber.fail(error)
    })

  const unlisten = source.listen(filter, (item) => {
    if (over() || !relevant(item)) return
    if (live) {
      if (subscriber.hasRoom?.() === false) {
        // This line and those after it are read from the index once the client has room.
        live = false
        follow()
        return
      }
      return deliver(item)
    }
    if (!held) return
    if (held.length < HELD_MAX) held.push(item)
    else overflowed = true
  })

  void (async () => {
    let known: boolean
    try {
      known = await source.known(filter.runid)
    } catch (error) {
      unlisten()
      if (!cancelled)
        subscriber.refuse(
          error instanceof ConveyorError && error.kind === 'unavailable'
            ? error
            : unavailable(`cannot tell whether run ${filter.runid} exists: ${String(error)}`, error),
        )
      return
    }
    if (cancelled) return
    if (!known) {
      unlisten()
      subscriber.refuse(
        notFound(`run ${filter.runid} is unknown: no resource runs it and the log index holds no line of it`),
      )
      return
    }
    subscriber.open()
    follow()
  })()

  return () => {
    cancelled = true
    unlisten()
  }
}
