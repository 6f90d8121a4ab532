import { request } from 'node:http'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { api, startStack, type Stack } from './harness.ts'
import { startGateway, type Gateway } from '../gateway/server.ts'
import { createLogger } from '../runtime/logger.ts'

let stack: Stack
let marker: string

beforeAll(async () => {
  stack = await startStack({ worker: true })
  marker = join(await mkdtemp(join(tmpdir(), 'conveyor-attack-')), 'pwned')
})
afterAll(async () => {
  await stack?.close()
  await rm(join(marker, '..'), { recursive: true, force: true })
})

/** A request as any HTTP client sends it, with the `Host` it chooses (fetch would not let us). */
function raw(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; body: any }> {
  const url = new URL(base)
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        // A fresh connection each time: the gateway closes the one it refuses a body on.
        agent: false,
        method,
        path,
        headers: { ...headers, connection: 'close', 'content-length': String(Buffer.byteLength(body ?? '')) },
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }))
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

/** The three requests that ran a command from any web page: a form-like `text/plain` POST each. */
const ATTACK = [
  ['/resource-definitions', { name: 'evil', version: '1', schema: { type: 'object' } }],
  ['/pipelines', { name: 'evil', resource: 'evil', steps: [{ id: 'x', driver: 'shell', commands: [] as string[] }] }],
  ['/resources', { name: 'evil', resource: 'evil', pipeline: 'evil', spec: {} }],
] as const

describe('a web page cannot drive the API', () => {
  it('refuses the three text/plain POSTs of the attack, from another origin or none, and nothing runs', async () => {
    ;(ATTACK[1][1].steps[0]!.commands as string[]).push(`touch ${marker}`)
    const host = new URL(stack.url).host
    for (const origin of ['http://evil.example', undefined]) {
      for (const [path, body] of ATTACK) {
        const answer = await raw(
          stack.url,
          'POST',
          path,
          { host, 'content-type': 'text/plain', ...(origin ? { origin } : {}) },
          JSON.stringify(body),
        )
        expect(answer.status, `${path} from ${origin ?? 'no origin'}`).toBe(origin ? 403 : 415)
        expect(answer.body.type).toBe(
          origin ? 'urn:conveyor:problem:origin-not-allowed' : 'urn:conveyor:problem:unsupported-media-type',
        )
      }
    }
    // Even declared JSON, a foreign page is refused.
    const json = await raw(
      stack.url,
      'POST',
      '/resource-definitions',
      { host, 'content-type': 'application/json', origin: 'http://evil.example' },
      JSON.stringify(ATTACK[0][1]),
    )
    expect(json.status).toBe(403)
    expect((await api(stack.url, 'GET', '/resource-definitions/evil')).status).toBe(404)
    expect(existsSync(marker)).toBe(false)
  })

  it('a write without a body still needs JSON declared; the gateway’s own origin passes', async () => {
    const host = new URL(stack.url).host
    const none = await raw(stack.url, 'POST', '/resource-definitions', { host })
    expect(none.status).toBe(415)
    expect(none.body.errors).toEqual([{ path: 'headers/content-type', message: 'must be application/json' }])
    const own = await raw(
      stack.url,
      'POST',
      '/resource-definitions',
      { host, origin: `http://${host}`, 'content-type': 'application/json; charset=utf-8' },
      JSON.stringify({ name: 'own-origin', version: '1', schema: { type: 'object' } }),
    )
    expect(own.status).toBe(201)
  })

  it('refuses a rebound DNS name on a loopback gateway (the Host is not a loopback name)', async () => {
    const port = new URL(stack.url).port
    const rebound = await raw(stack.url, 'GET', '/resource-definitions', { host: `attacker.example:${port}` })
    expect(rebound.status).toBe(403)
    expect(rebound.body.type).toBe('urn:conveyor:problem:host-not-allowed')
    for (const name of ['localhost', '127.0.0.1', '[::1]'])
      expect((await raw(stack.url, 'GET', '/health', { host: `${name}:${port}` })).status, name).toBe(200)
  })

  it('refuses SSE and WebSocket upgrades from another origin', async () => {
    const host = new URL(stack.url).host
    const sse = await raw(stack.url, 'GET', '/logs/streams/shell/some-run', { host, origin: 'http://evil.example' })
    expect(sse.status).toBe(403)
    const wsUrl = stack.url.replace('http', 'ws') + '/ws'
    const refused = await new Promise<number>((resolve, reject) => {
      const socket = new WebSocket(wsUrl, { origin: 'http://evil.example' })
      socket.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
      socket.on('open', () => reject(new Error('a foreign origin opened /ws')))
      socket.on('error', () => undefined)
    })
    expect(refused).toBe(403)
    const logSocket = await new Promise<number>((resolve, reject) => {
      const socket = new WebSocket(stack.url.replace('http', 'ws') + '/logs/pipeline/some-run', {
        origin: 'http://evil.example',
      })
      socket.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
      socket.on('open', () => reject(new Error('a foreign origin opened a log socket')))
      socket.on('error', () => undefined)
    })
    expect(logSocket).toBe(403)
    const own = await new Promise<boolean>((resolve) => {
      const socket = new WebSocket(wsUrl, { origin: `http://${host}` })
      socket.on('open', () => (socket.close(), resolve(true)))
      socket.on('unexpected-response', () => resolve(false))
      socket.on('error', () => resolve(false))
    })
    expect(own).toBe(true)
  })
})

describe('CONVEYOR_ALLOWED_ORIGINS', () => {
  let gateway: Gateway
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conveyor-origins-'))
    gateway = await startGateway({
      connections: stack.connections,
      port: 0,
      dataDir: dir,
      logger: createLogger('gateway', 'error'),
      allowedOrigins: ['https://ui.example.com:3000'],
      auth: false,
    })
  })
  afterAll(async () => {
    await gateway?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('adds origins a page may call from; others stay refused', async () => {
    const host = new URL(gateway.url).host
    const allowed = await raw(gateway.url, 'GET', '/resource-definitions', {
      host,
      origin: 'https://ui.example.com:3000',
    })
    expect(allowed.status).toBe(200)
    const other = await raw(gateway.url, 'GET', '/resource-definitions', { host, origin: 'https://ui.example.com' })
    expect(other.status).toBe(403)
  })
})
