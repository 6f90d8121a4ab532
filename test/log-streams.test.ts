import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { get, type IncomingMessage } from 'node:http'
import WebSocket from 'ws'
import { headers as natsHeaders } from '@nats-io/transport-node'
import { api, eventually, startStack, type Stack } from './harness.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack({ worker: true })
  expect(
    (await api(stack.url, 'POST', '/resource-definitions', { name: 'quiet', version: '1', schema: { type: 'object' } }))
      .status,
  ).toBe(201)
})
afterAll(async () => stack?.close())

const PADDING = 'p'.repeat(900)

/** Publishes `count` lines of ~1 KB to a run's log, pipelined; returns their sequences. */
async function publishLines(driver: string, runid: string, from: number, count: number): Promise<number[]> {
  const seqs: number[] = []
  for (let start = from; start < from + count; start += 1000) {
    const acks = await Promise.all(
      Array.from({ length: Math.min(1000, from + count - start) }, (_, i) =>
        stack.connections.js.publish(
          `conveyor.logs.${driver}.${runid}`,
          JSON.stringify({ message: `line ${start + i} ${PADDING}`, stream: 'log' }),
        ),
      ),
    )
    seqs.push(...acks.map((a) => a.seq))
  }
  return seqs
}

async function publishEnd(driver: string, runid: string): Promise<number> {
  const h = natsHeaders()
  h.set('Conveyor-Log-End', '1')
  const ack = await stack.connections.js.publish(
    `conveyor.logs.${driver}.${runid}`,
    JSON.stringify({ success: true, message: 'done' }),
    { headers: h },
  )
  return ack.seq
}

const indexed = (seq: number) =>
  eventually(() => (stack.gateway.logs.lastSeq >= seq ? true : undefined), `the log index to reach ${seq}`, 60_000)

/** An SSE reader over node:http, so a test can stop reading (TCP backpressure) and go on. */
class SseReader {
  readonly seqs: number[] = []
  readonly messages: string[] = []
  ended = false
  response!: IncomingMessage
  readonly done: Promise<void>
  readonly started: Promise<IncomingMessage>
  #buffer = ''

  constructor(url: string, options: { keepMessages?: boolean } = {}) {
    let resolveDone!: () => void
    this.done = new Promise((resolve) => (resolveDone = resolve))
    this.started = new Promise((resolve, reject) => {
      get(url, (response) => {
        this.response = response
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => {
          this.#buffer += chunk
          let cut: number
          while ((cut = this.#buffer.indexOf('\n\n')) >= 0) {
            const block = this.#buffer.slice(0, cut)
            this.#buffer = this.#buffer.slice(cut + 2)
            if (block.includes('event: end')) this.ended = true
            else if (block.startsWith('id: ')) {
              this.seqs.push(Number(block.slice(4, block.indexOf('\n'))))
              if (options.keepMessages) this.messages.push(JSON.parse(block.slice(block.indexOf('data: ') + 6)).message)
            }
          }
        })
        response.on('end', resolveDone)
        response.on('close', resolveDone)
        resolve(response)
      }).on('error', reject)
    })
  }
}

const rss = (): number => process.memoryUsage().rss

describe('log streams', () => {
  it('slow readers of a big backlog get every line and the end, and the gateway never holds the backlog per reader', async () => {
    const runid = 'big-backlog'
    const seqs = await publishLines('bulk', runid, 0, 30_000)
    const endSeq = await publishEnd('bulk', runid)
    await indexed(endSeq)

    const before = rss()
    let peak = before
    const sampler = setInterval(() => (peak = Math.max(peak, rss())), 20)
    const readers = Array.from({ length: 6 }, () => new SseReader(`${stack.url}/logs/streams/bulk/${runid}`))
    try {
      // They read nothing for a while: the gateway has all of them waiting on a full socket.
      for (const reader of readers) (await reader.started).pause()
      await new Promise((resolve) => setTimeout(resolve, 3000))
      const stalled = peak
      for (const reader of readers) reader.response.resume()
      await Promise.all(readers.map((r) => r.done))
      console.log(
        `RSS of the test process (gateway inside): before ${(before / 2 ** 20).toFixed(0)} MiB, peak while stalled ${(stalled / 2 ** 20).toFixed(0)} MiB, peak ${(peak / 2 ** 20).toFixed(0)} MiB`,
      )
      for (const reader of readers) {
        expect(reader.seqs).toEqual(seqs)
        expect(reader.ended).toBe(true)
      }
      // Six readers of a 30 MB backlog: loading it per reader is ~6 × 80 MB.
      expect(stalled - before).toBeLessThan(150 * 2 ** 20)
    } finally {
      clearInterval(sampler)
      for (const reader of readers) reader.response?.destroy()
    }
  }, 180_000)

  it('a reader that falls behind a live run catches up from the index, with no gap and no duplicate', async () => {
    const runid = 'live-behind'
    const first = await publishLines('live', runid, 0, 100)
    await indexed(first.at(-1)!)
    const reader = new SseReader(`${stack.url}/logs/streams/live/${runid}`, { keepMessages: true })
    await reader.started
    await eventually(() => (reader.seqs.length === 100 ? true : undefined), 'the backlog')
    reader.response.pause()
    // 20 MB arrive while it does not read: more than the gateway keeps for a socket.
    const rest = await publishLines('live', runid, 100, 20_000)
    const endSeq = await publishEnd('live', runid)
    await indexed(endSeq)
    reader.response.resume()
    await reader.done
    expect(reader.seqs).toEqual([...first, ...rest])
    expect(reader.messages.map((m) => m.split(' ')[1])).toEqual(Array.from({ length: 20_100 }, (_, i) => String(i)))
    expect(reader.ended).toBe(true)
  }, 180_000)

  it('GET /logs answers at most 16 MiB, and says where the next page starts', async () => {
    const big = 'b'.repeat(60_000)
    const acks = await Promise.all(
      Array.from({ length: 400 }, (_, i) =>
        stack.connections.js.publish('conveyor.logs.wide.wide-run', JSON.stringify({ message: `${i} ${big}` })),
      ),
    )
    const seqs = acks.map((a) => a.seq)
    await indexed(seqs.at(-1)!)
    const received: number[] = []
    let pages = 0
    let after: string | null = null
    do {
      const response = await fetch(`${stack.url}/logs?runid=wide-run${after ? `&after=${after}` : ''}`)
      expect(response.status).toBe(200)
      const text = await response.text()
      expect(text.length).toBeLessThanOrEqual(17 * 2 ** 20)
      received.push(...(JSON.parse(text) as any[]).map((l) => l.seq))
      after = response.headers.get('conveyor-next-after')
      pages++
    } while (after)
    expect(pages).toBeGreaterThan(1)
    expect(received).toEqual(seqs)
  }, 60_000)

  it('a stream of an unknown run is a 404 over SSE, WebSocket and /ws, at once', async () => {
    for (const path of ['/logs/streams/nobody/no-such-run', '/logs/pipeline/no-such-run']) {
      const response = await fetch(`${stack.url}${path}`, { signal: AbortSignal.timeout(10_000) })
      expect(response.status, path).toBe(404)
      expect(response.headers.get('content-type')).toBe('application/problem+json')
      const body: any = await response.json()
      expect(body).toMatchObject({ status: 404, type: 'urn:conveyor:problem:not-found' })
      expect(body.detail).toContain('no-such-run')
    }
    const refused = await new Promise<number>((resolve, reject) => {
      const socket = new WebSocket(`${stack.url.replace('http', 'ws')}/logs/streams/nobody/no-such-run`)
      socket.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0))
      socket.on('open', () => reject(new Error('the upgrade of an unknown run was accepted')))
      socket.on('error', reject)
    })
    expect(refused).toBe(404)

    const socket = new WebSocket(`${stack.url.replace('http', 'ws')}/ws`)
    const messages: any[] = []
    socket.on('message', (data) => messages.push(JSON.parse(data.toString())))
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject))
    try {
      socket.send(JSON.stringify({ op: 'logs', id: 'l1', runid: 'no-such-run' }))
      const error = await eventually(() => messages.find((m) => m.id === 'l1'), 'an answer to the subscription')
      expect(error).toMatchObject({ id: 'l1', type: 'error', code: 'not-found' })
    } finally {
      socket.close()
    }
  }, 60_000)

  it('a run that exists but has no line yet streams over SSE and WebSocket, and gets its lines when they come', async () => {
    // No driver serves `quiet`: the run exists (its resource does) and nothing logs for it.
    const created = await api(stack.url, 'POST', '/resources', { name: 'q1', resource: 'quiet', spec: {} })
    expect(created.status).toBe(201)
    const runid = created.body.runid
    const sse = new SseReader(`${stack.url}/logs/streams/late-driver/${runid}`, { keepMessages: true })
    expect((await sse.started).statusCode).toBe(200)
    const ws = new WebSocket(`${stack.url.replace('http', 'ws')}/logs/pipeline/${runid}`)
    const wsLines: string[] = []
    ws.on('message', (data) => wsLines.push(JSON.parse(data.toString()).message))
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
    try {
      expect((await api(stack.url, 'POST', '/logs', { driver: 'late-driver', runid, message: 'at last' })).status).toBe(
        201,
      )
      await eventually(() => (sse.messages.length === 1 && wsLines.length === 1 ? true : undefined), 'the first line')
      expect(sse.messages).toEqual(['at last'])
      expect(wsLines).toEqual(['at last'])
      // The run of a new version streams at once too.
      const replaced = await api(stack.url, 'PUT', '/resources/quiet/q1', { name: 'q1', resource: 'quiet', spec: {} })
      expect(replaced.status).toBe(200)
      const abort = new AbortController()
      expect((await fetch(`${stack.url}/logs/pipeline/${replaced.body.runid}`, { signal: abort.signal })).status).toBe(
        200,
      )
      abort.abort()
    } finally {
      sse.response.destroy()
      ws.close()
    }
  }, 60_000)

  it('while etcd is frozen a stream of a run without lines answers 503 with Retry-After; one with lines still streams', async () => {
    const lines = await publishLines('frozen', 'has-lines', 0, 3)
    await indexed(lines.at(-1)!)
    const pid = stack.servers.etcd.child.pid!
    process.kill(pid, 'SIGSTOP')
    try {
      const started = Date.now()
      const unknown = await fetch(`${stack.url}/logs/pipeline/cannot-tell`, { signal: AbortSignal.timeout(30_000) })
      expect(unknown.status).toBe(503)
      expect(unknown.headers.get('retry-after')).toMatch(/^\d+$/)
      expect(Date.now() - started).toBeLessThan(15_000)
      const known = new SseReader(`${stack.url}/logs/streams/frozen/has-lines`)
      expect((await known.started).statusCode).toBe(200)
      await eventually(() => (known.seqs.length === 3 ? true : undefined), 'the stored lines')
      known.response.destroy()
    } finally {
      process.kill(pid, 'SIGCONT')
    }
  }, 60_000)
})
