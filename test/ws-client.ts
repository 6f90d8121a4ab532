import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { startGateway, type Gateway } from '../gateway/server.ts'
import type { Connections } from '../runtime/connections.ts'
import type { StreamLimits } from '../runtime/config.ts'
import type { Logger } from '../runtime/logger.ts'

/** A `/ws` client that keeps every message it receives, and how the socket closed. */
export class WsClient {
  readonly messages: any[] = []
  readonly socket: WebSocket
  readonly opened: Promise<void>
  readonly closed: Promise<{ code: number; reason: string }>
  /** The HTTP answer when the upgrade was refused. */
  refused: { status: number; headers: Record<string, string | string[] | undefined>; body: string } | undefined

  constructor(url: string, options: WebSocket.ClientOptions = {}) {
    this.socket = new WebSocket(`${url.replace('http://', 'ws://')}/ws`, options)
    this.socket.on('message', (data) => this.messages.push(JSON.parse(data.toString())))
    let refuse: (error: Error) => void = () => {}
    this.opened = new Promise((resolve, reject) => {
      refuse = reject
      this.socket.once('open', () => resolve())
      this.socket.once('error', reject)
    })
    this.opened.catch(() => {})
    // With this listener, ws leaves the refused upgrade to us (and emits no error).
    this.socket.on('unexpected-response', (_request, response) => {
      let body = ''
      response.on('data', (chunk: Buffer) => (body += chunk.toString()))
      response.on('end', () => {
        this.refused = { status: response.statusCode ?? 0, headers: response.headers, body }
        refuse(new Error(`the upgrade was refused with ${response.statusCode}`))
      })
    })
    this.closed = new Promise((resolve) =>
      this.socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    )
  }

  async send(request: unknown): Promise<void> {
    await this.opened
    this.socket.send(JSON.stringify(request))
  }

  async close(): Promise<void> {
    this.socket.close()
    await this.closed
  }

  /**
   * Stops reading from the TCP socket, as a client that never reads would. (ws resumes its socket
   * whenever its own parser drains, so that is held off too until `resume`.)
   */
  pause(): void {
    const socket = (this.socket as unknown as { _socket: { pause(): void; resume(): unknown } })._socket
    socket.pause()
    const resume = socket.resume.bind(socket)
    socket.resume = () => socket
    this.#resumeSocket = () => {
      socket.resume = resume
      socket.resume()
    }
  }

  resume(): void {
    this.#resumeSocket?.()
    this.#resumeSocket = undefined
  }

  #resumeSocket: (() => void) | undefined

  of(id: string, type: string): any[] {
    return this.messages.filter((m) => m.id === id && m.type === type)
  }

  changes(id: string): any[] {
    return this.of(id, 'change')
  }

  /** Every item of a watch's initial list once its last page arrived, else undefined. */
  listed(id: string): { revision: number; items: any[]; pages: number } | undefined {
    const pages = this.of(id, 'list')
    if (pages.length === 0 || pages.at(-1).more === true) return undefined
    return { revision: pages[0].revision, items: pages.flatMap((p) => p.items), pages: pages.length }
  }
}

/** A warning a gateway logged. */
export interface Warning {
  readonly message: string
  readonly fields: Record<string, unknown> | undefined
}

/** A second gateway on the stack's servers with its own stream limits, recording what it warns about. */
export async function gatewayWithLimits(
  connections: Connections,
  limits: Partial<StreamLimits>,
): Promise<{ gateway: Gateway; url: string; warnings: Warning[]; close(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'conveyor-gw-limits-'))
  const warnings: Warning[] = []
  const logger: Logger = {
    info: () => {},
    warn: (message, fields) => warnings.push({ message, fields }),
    error: (message, fields) => process.stderr.write(`gateway error: ${message} ${JSON.stringify(fields)}\n`),
  }
  const gateway = await startGateway({
    auth: false,
    connections,
    port: 0,
    dataDir: dir,
    logger,
    streamLimits: limits,
  })
  return {
    gateway,
    url: gateway.url,
    warnings,
    close: async () => {
      await gateway.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
