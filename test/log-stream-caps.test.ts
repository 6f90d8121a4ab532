import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { get, type IncomingMessage } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { startGateway, type Gateway } from '../gateway/server.ts'
import { createLogger } from '../runtime/logger.ts'
import { eventually, startStack, type Stack } from './harness.ts'

let stack: Stack
let gateway: Gateway
let dir: string

beforeAll(async () => {
  stack = await startStack()
  dir = await mkdtemp(join(tmpdir(), 'conveyor-log-caps-'))
  gateway = await startGateway({
    auth: false,
    connections: stack.connections,
    port: 0,
    dataDir: dir,
    logger: createLogger('gateway', 'error'),
    streamLimits: { connectionsPerClient: 2, idleTimeoutSeconds: 9 },
  })
})
afterAll(async () => {
  await gateway?.close()
  await stack?.close()
  await rm(dir, { recursive: true, force: true })
})

async function publishLines(runid: string, from: number, count: number): Promise<number[]> {
  const acks = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      stack.connections.js.publish(
        `conveyor.logs.capped.${runid}`,
        JSON.stringify({ message: `line ${from + i} ${'c'.repeat(900)}` }),
      ),
    ),
  )
  const seqs = acks.map((a) => a.seq)
  await eventually(() => (gateway.logs.lastSeq >= seqs.at(-1)! ? true : undefined), 'the lines indexed', 30_000)
  return seqs
}

/** Opens an SSE stream; resolves once the answer's head arrived. */
function openSse(path: string, headers: Record<string, string> = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => get(`${gateway.url}${path}`, { headers }, resolve).on('error', reject))
}

const seqsOf = (text: string): number[] => [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]))

describe('caps of log streams', () => {
  it('a client past its open streams is refused with 429 over SSE and WebSocket, and is served again once one closes', async () => {
    await publishLines('capped-run', 0, 1)
    const open = [await openSse('/logs/streams/capped/capped-run'), await openSse('/logs/pipeline/capped-run')]
    try {
      for (const response of open) expect(response.statusCode).toBe(200)
      const third = await fetch(`${gateway.url}/logs/streams/capped/capped-run`, {
        signal: AbortSignal.timeout(10_000),
      })
      expect(third.status).toBe(429)
      expect(third.headers.get('retry-after')).toMatch(/^\d+$/)
      expect(((await third.json()) as any).type).toBe('urn:conveyor:problem:too-many-connections')
      const refused = await new Promise<number>((resolve, reject) => {
        const socket = new WebSocket(`${gateway.url.replace('http', 'ws')}/logs/pipeline/capped-run`)
        socket.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0))
        socket.on('open', () => reject(new Error('a third stream was accepted')))
        socket.on('error', reject)
      })
      expect(refused).toBe(429)
      open.pop()!.destroy()
      await eventually(async () => {
        const again = await openSse('/logs/pipeline/capped-run')
        again.destroy()
        return again.statusCode === 200 ? true : undefined
      }, 'a stream once one closed')
    } finally {
      for (const response of open) response.destroy()
    }
  }, 60_000)

  it('a reader that reads nothing is closed after the idle timeout, and resumes with Last-Event-ID with no gap', async () => {
    const first = await publishLines('idle-run', 0, 10)
    const response = await openSse('/logs/streams/capped/idle-run')
    let text = ''
    response.setEncoding('utf8')
    response.on('data', (chunk: string) => (text += chunk))
    const ended = new Promise<void>((resolve) => response.on('close', resolve))
    await eventually(() => (seqsOf(text).length === 10 ? true : undefined), 'the first lines')
    response.pause()
    // ~4 MB while it reads nothing: its socket fills and stays full.
    const rest: number[] = []
    for (let i = 0; i < 4; i++) rest.push(...(await publishLines('idle-run', 10 + i * 1000, 1000)))
    // 9 s without reading: the gateway ends the response within 1.5 times that; what reached the
    // client's socket before is still read.
    await new Promise((resolve) => setTimeout(resolve, 16_000))
    response.resume()
    await Promise.race([
      ended,
      // Generous on a loaded machine: the gateway checks at each heartbeat.
      new Promise((_, reject) => setTimeout(() => reject(new Error('the idle reader was not closed')), 30_000)),
    ])
    const received = seqsOf(text)
    expect(text).not.toContain('event: end')

    const resumed = await openSse('/logs/streams/capped/idle-run', { 'last-event-id': String(received.at(-1)) })
    let more = ''
    resumed.setEncoding('utf8')
    resumed.on('data', (chunk: string) => (more += chunk))
    const last = await publishLines('idle-run', 5000, 1)
    await eventually(() => (seqsOf(more).at(-1) === last[0] ? true : undefined), 'the rest after the resume')
    resumed.destroy()
    expect([...received, ...seqsOf(more)]).toEqual([...first, ...rest, ...last])
  }, 90_000)
})
