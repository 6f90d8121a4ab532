import type { LogEnd, LogLine, Resource } from '../definitions/objects.ts'
import { ApiError, UnreachableError } from './errors.ts'
import type { Transport } from './transport.ts'

/** A page of the initial list of a watch (all pages are read at one `revision`). */
export interface WatchList {
  readonly type: 'list'
  readonly revision: number
  readonly items: readonly Resource[]
  /** More pages of this list follow. */
  readonly more: boolean
}

/** One committed change of a watched type. */
export interface WatchChange {
  readonly type: 'change'
  readonly kind: 'created' | 'updated' | 'deleted'
  readonly revision: number
  readonly object: Resource
}

export type WatchEvent = WatchList | WatchChange

export interface WatchOptions {
  readonly labelSelector?: string
  /** Changes after this revision, without a list first. */
  readonly fromRevision?: number
  readonly signal?: AbortSignal
}

/** A log line, or the end of the run (a pipeline run, or one driver's run). */
export type LogStreamItem =
  { readonly type: 'line'; readonly line: LogLine } | { readonly type: 'end'; readonly end: LogEnd }

export interface FollowOptions {
  /** Lines after this sequence. @default 0 */
  readonly after?: number
  readonly signal?: AbortSignal
}

/** Subprotocols that carry the token on a WebSocket upgrade (browsers cannot set headers). */
const API_SUBPROTOCOL = 'conveyor.v1'
const BEARER_SUBPROTOCOL = 'conveyor.bearer.'
/** Reconnect backoff after a lost connection, doubling up to the maximum. */
const RETRY_FIRST_MS = 250
const RETRY_MAX_MS = 5000

/** The parts of a WebSocket this client uses (the browser's, or the `ws` package's). */
interface SocketLike {
  onopen: ((event: unknown) => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onclose: ((event: { code: number; reason: string }) => void) | null
  onerror: ((event: unknown) => void) | null
  send(data: string): void
  close(code?: number, reason?: string): void
}
type SocketClass = new (url: string, protocols: string[]) => SocketLike

async function socketClass(): Promise<SocketClass> {
  const global = (globalThis as { WebSocket?: SocketClass }).WebSocket
  if (global) return global
  const ws = (await import('ws')) as unknown as { default: SocketClass }
  return ws.default
}

const delay = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true })
  })

/** A queue between callbacks and an async iterator. */
class Channel<T> {
  readonly #items: T[] = []
  #waiter: (() => void) | undefined
  #error: unknown
  #ended = false

  push(item: T): void {
    this.#items.push(item)
    this.#wake()
  }

  fail(error: unknown): void {
    this.#error ??= error
    this.#wake()
  }

  end(): void {
    this.#ended = true
    this.#wake()
  }

  #wake(): void {
    const waiter = this.#waiter
    this.#waiter = undefined
    waiter?.()
  }

  /** The next item, or undefined once ended; throws what `fail` was given. */
  async next(): Promise<T | undefined> {
    for (;;) {
      if (this.#items.length > 0) return this.#items.shift()
      if (this.#error !== undefined) throw this.#error
      if (this.#ended) return undefined
      await new Promise<void>((resolve) => (this.#waiter = resolve))
    }
  }
}

/** Why a watch cannot go on: `compacted` (list again), or a refusal of the request. */
export class WatchError extends Error {
  readonly code: string

  constructor(code: string, message: string) {
    super(message)
    this.name = 'WatchError'
    this.code = code
  }
}

/**
 * A type's resources, then every committed change, over `/ws`. A lost connection (or a gateway
 * that asks the client to come back, 1013) is resumed from the last whole revision: changes are
 * yielded only once every change of their revision arrived, so nothing is missed or repeated.
 */
export async function* watchResources(
  transport: Transport,
  type: string,
  options: WatchOptions = {},
): AsyncGenerator<WatchEvent> {
  const Socket = await socketClass()
  const url = `${transport.baseUrl.replace(/^http/, 'ws')}/ws`
  const protocols = [API_SUBPROTOCOL, ...(transport.token ? [BEARER_SUBPROTOCOL + transport.token] : [])]
  /** The last revision whose every change was yielded (or the list's). */
  let resumeAt = options.fromRevision
  let retryMs = RETRY_FIRST_MS
  while (!options.signal?.aborted) {
    const channel = new Channel<WatchEvent | { type: 'closed'; code: number; reason: string }>()
    const socket = new Socket(url, protocols)
    const abort = (): void => socket.close(1000, 'done')
    options.signal?.addEventListener('abort', abort, { once: true })
    socket.onopen = () =>
      socket.send(
        JSON.stringify({
          op: 'watch',
          id: 'w',
          type,
          ...(options.labelSelector ? { labelSelector: options.labelSelector } : {}),
          ...(resumeAt !== undefined ? { fromRevision: resumeAt } : {}),
        }),
      )
    socket.onmessage = (event) => {
      const message = JSON.parse(String(event.data)) as Record<string, unknown>
      if (message.type === 'error') {
        const code = String(message.code)
        // Too slow: come back from where the gateway says; unavailable: come back later.
        if (code === 'too-slow' || code === 'unavailable') return
        channel.fail(new WatchError(code, String(message.message)))
      } else channel.push(message as unknown as WatchEvent)
    }
    socket.onerror = () => {}
    socket.onclose = (event) => channel.push({ type: 'closed', code: event.code, reason: event.reason })
    let opened = false
    const partial: WatchChange[] = []
    try {
      for (let item = await channel.next(); item; item = await channel.next()) {
        if (item.type === 'closed') {
          // A refused upgrade shows only as a close: the same read over HTTP says why (401, 403, 404).
          if (!opened)
            await transport
              .request('GET', `/resources/${encodeURIComponent(type)}`, { query: { limit: 1 } })
              .catch(refusalOnly)
          break
        }
        opened = true
        retryMs = RETRY_FIRST_MS
        if (item.type === 'list') {
          if (!item.more) resumeAt = item.revision
          yield item
          continue
        }
        partial.push(item)
        if ((item as WatchChange & { more?: boolean }).more) continue
        resumeAt = item.revision
        for (const change of partial.splice(0)) yield stripMore(change)
      }
    } finally {
      options.signal?.removeEventListener('abort', abort)
      socket.onclose = null
      socket.close(1000, 'done')
    }
    if (options.signal?.aborted) return
    await delay(retryMs, options.signal)
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS)
  }
}

/** Rethrows a refusal (4xx); an unavailable gateway (503, unreachable) is retried by the caller. */
function refusalOnly(error: unknown): void {
  if (error instanceof ApiError && error.status < 500) throw error
}

const stripMore = (change: WatchChange): WatchChange => {
  const { more: _, ...rest } = change as WatchChange & { more?: boolean }
  return rest
}

/**
 * Follows a run's log over SSE: the stored lines after `after`, then live ones, then the end.
 * A dropped connection is resumed after the last line received (`Last-Event-ID`), so no line is
 * lost or repeated.
 */
export async function* followLog(
  transport: Transport,
  path: string,
  options: FollowOptions = {},
): AsyncGenerator<LogStreamItem> {
  let after = options.after ?? 0
  let retryMs = RETRY_FIRST_MS
  for (;;) {
    let response: Response
    try {
      response = await transport.open('GET', path, {
        query: { after },
        headers: { accept: 'text/event-stream' },
        ...(options.signal ? { signal: options.signal } : {}),
      })
    } catch (error) {
      if (options.signal?.aborted) return
      const retry = error instanceof UnreachableError || (error instanceof ApiError && error.status === 503)
      if (!retry) throw error
      await delay(retryMs, options.signal)
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS)
      continue
    }
    retryMs = RETRY_FIRST_MS
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader()
    let buffer = ''
    try {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        buffer += value
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          let event = 'message'
          let data = ''
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7)
            else if (line.startsWith('data: ')) data += line.slice(6)
          }
          if (!data) continue
          const parsed = JSON.parse(data) as LogLine & LogEnd
          if (event === 'end') {
            const { event: _, ...end } = parsed as LogEnd & { event?: string }
            yield { type: 'end', end }
            return
          }
          after = Math.max(after, parsed.seq)
          yield { type: 'line', line: parsed }
        }
      }
    } catch (error) {
      if (options.signal?.aborted) return
      void error
    } finally {
      void reader.cancel().catch(() => {})
    }
    if (options.signal?.aborted) return
    await delay(retryMs, options.signal)
  }
}
