import WebSocket from 'ws'

/** What a watcher got wrong: a change seen twice, or one out of order. */
export interface WatchAnomaly {
  readonly watcher: string
  readonly what: string
  readonly at: string
}

/**
 * A client of `/ws` that watches one type and, like a careful client, resumes from the last
 * whole revision it received (its change without `more`) whenever its socket closes or the watch
 * fails (moving to another gateway when its own is gone), dropping the part of a revision it had.
 * It records every change's revision.
 */
export class Watcher {
  readonly name: string
  readonly #type: string
  readonly #urls: readonly string[]
  #gateway: number
  #socket: WebSocket | undefined
  #stopped = false
  /** The revision of the first list: every change after it must arrive, once. */
  listRevision: number | undefined
  last = 0
  /** Changes seen, by `revision name` (one etcd transaction may change several resources at one revision), with how often. */
  readonly seen = new Map<string, number>()
  /** Changes of a revision whose last change has not arrived yet. */
  #partial: string[] = []
  readonly anomalies: WatchAnomaly[] = []
  reconnects = 0
  /** The last message received, for diagnostics. */
  lastMessage = ''
  errors = new Map<string, number>()

  constructor(name: string, type: string, urls: readonly string[], gateway: number) {
    this.name = name
    this.#type = type
    this.#urls = urls
    this.#gateway = gateway
  }

  /** Resolves once the first list arrived. */
  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `${this.name}: no list within 90 s (${JSON.stringify(Object.fromEntries(this.errors))}, last: ${this.lastMessage})`,
            ),
          ),
        90_000,
      )
      this.#connect(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  #connect(listed?: () => void): void {
    if (this.#stopped) return
    const url = this.#urls[this.#gateway % this.#urls.length]!.replace('http://', 'ws://') + '/ws'
    const socket = new WebSocket(url)
    this.#socket = socket
    let reconnecting = false
    const reconnect = (reason: string): void => {
      if (reconnecting || this.#stopped) return
      reconnecting = true
      this.#partial = []
      this.errors.set(reason, (this.errors.get(reason) ?? 0) + 1)
      socket.removeAllListeners()
      socket.on('error', () => {})
      socket.terminate()
      this.reconnects++
      // A gateway that refuses goes to the back of the line.
      if (reason === 'socket error' || reason === 'closed') this.#gateway++
      setTimeout(() => this.#connect(listed), 500)
    }
    socket.on('open', () => {
      socket.send(
        JSON.stringify({
          op: 'watch',
          id: 'w',
          type: this.#type,
          ...(this.listRevision !== undefined ? { fromRevision: this.last } : {}),
        }),
      )
    })
    socket.on('message', (data) => {
      this.lastMessage = data.toString().slice(0, 300)
      const message = JSON.parse(data.toString()) as {
        type: string
        revision?: number
        code?: string
        more?: boolean
        object?: { name?: string }
      }
      if (message.type === 'list') {
        if (this.listRevision === undefined) {
          this.listRevision = message.revision!
          this.last = message.revision!
          listed?.()
        } else this.anomalies.push({ watcher: this.name, what: 'listed again', at: new Date().toISOString() })
      } else if (message.type === 'change') {
        const revision = message.revision!
        this.#partial.push(`${revision} ${message.object?.name}`)
        if (!message.more) {
          for (const key of this.#partial) this.seen.set(key, (this.seen.get(key) ?? 0) + 1)
          this.#partial = []
        }
        if (revision <= this.last)
          this.anomalies.push({
            watcher: this.name,
            what: `revision ${revision} after ${this.last}`,
            at: new Date().toISOString(),
          })
        if (!message.more) this.last = Math.max(this.last, revision)
      } else if (message.type === 'error') {
        if (message.code === 'compacted')
          this.anomalies.push({ watcher: this.name, what: 'compacted', at: new Date().toISOString() })
        reconnect(`error ${message.code}`)
      }
    })
    socket.on('error', () => reconnect('socket error'))
    socket.on('close', (code) => reconnect(code === 1013 ? 'closed 1013' : 'closed'))
  }

  stop(): void {
    this.#stopped = true
    this.#socket?.removeAllListeners()
    this.#socket?.on('error', () => {})
    this.#socket?.terminate()
  }
}
