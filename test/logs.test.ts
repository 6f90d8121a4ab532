import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { defineDriver, runDriver } from 'conveyor'
import { startGateway } from 'conveyor/server'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { createLogger } from '../runtime/logger.ts'
import { headers as natsHeaders } from '@nats-io/transport-node'

let stack: Stack

beforeAll(async () => {
  stack = await startStack({ worker: true })
  expect(
    (await api(stack.url, 'POST', '/resource-definitions', { name: 'build', version: '1', schema: { type: 'object' } }))
      .status,
  ).toBe(201)
})
afterAll(async () => stack?.close())

interface Received {
  readonly lines: string[]
  readonly seqs: number[]
  ended?: { success: boolean; message: string }
  readonly done: Promise<void>
}

function subscribeSse(url: string): Received {
  const received: Received = { lines: [], seqs: [], done: Promise.resolve() }
  ;(received as { done: Promise<void> }).done = (async () => {
    const response = await fetch(url)
    const decoder = new TextDecoder()
    let buffer = ''
    for await (const chunk of response.body!) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true })
      let cut: number
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut)
        buffer = buffer.slice(cut + 2)
        const data = block.split('\n').find((l) => l.startsWith('data: '))
        if (!data) continue
        const payload = JSON.parse(data.slice(6))
        if (block.includes('event: end')) received.ended = payload
        else {
          received.lines.push(payload.message)
          received.seqs.push(payload.seq)
        }
      }
    }
  })()
  return received
}

function subscribeWs(url: string): Received {
  const received: Received = { lines: [], seqs: [], done: Promise.resolve() }
  const socket = new WebSocket(url.replace('http://', 'ws://'))
  ;(received as { done: Promise<void> }).done = new Promise((resolve, reject) => {
    socket.on('message', (data) => {
      const payload = JSON.parse(data.toString())
      if (payload.event === 'end') received.ended = payload
      else {
        received.lines.push(payload.message)
        received.seqs.push(payload.seq)
      }
    })
    socket.on('close', () => resolve())
    socket.on('error', reject)
  })
  return received
}

describe('log streaming', () => {
  it('a subscriber that joins mid-run gets the backlog, then live lines, with no gap and no duplicate, then the end', async () => {
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    let producing!: () => void
    const fastPhase = new Promise<void>((resolve) => (producing = resolve))
    const driver = await runDriver(
      defineDriver({
        name: 'chatty',
        resources: ['build'],
        async reconcile(ctx) {
          for (let i = 1; i <= 300; i++) ctx.log(`line ${i}`)
          await gate
          producing()
          for (let i = 301; i <= 2300; i++) {
            ctx.log(`line ${i}`)
            if (i % 100 === 0) await new Promise((resolve) => setImmediate(resolve))
          }
          return { success: true, message: 'all logged' }
        },
      }),
      { natsUrl: stack.servers.natsUrl, natsAuth: stack.servers.natsAuth },
    )
    try {
      const created = await api(stack.url, 'POST', '/resources', { name: 'app', resource: 'build', spec: {} })
      const streamUrl = `${stack.url}/logs/streams/chatty/${created.body.runid}`
      await eventually(
        async () =>
          (await api(stack.url, 'GET', `/logs?driver=chatty&runid=${created.body.runid}`)).body.length === 300
            ? true
            : undefined,
        'the first 300 lines',
      )

      const subscribers = [subscribeSse(streamUrl), subscribeWs(streamUrl)]
      await eventually(
        () => (subscribers.every((s) => s.lines.length >= 300) ? true : undefined),
        'the backlog to reach both subscribers',
      )
      release()
      await fastPhase
      subscribers.push(subscribeSse(streamUrl), subscribeWs(streamUrl))
      await Promise.all(subscribers.map((s) => s.done))
      const late = [subscribeSse(streamUrl), subscribeWs(streamUrl)]
      await Promise.all(late.map((s) => s.done))

      const expected = Array.from({ length: 2300 }, (_, i) => `line ${i + 1}`)
      for (const subscriber of [...subscribers, ...late]) {
        expect(subscriber.lines).toEqual(expected)
        expect(new Set(subscriber.seqs).size).toBe(2300)
        expect(subscriber.ended).toMatchObject({ success: true, message: 'all logged' })
      }
      const stored = await api(stack.url, 'GET', `/logs?runid=${created.body.runid}`)
      expect(stored.body.map((l: any) => l.message)).toEqual(expected)
    } finally {
      await driver.close()
    }
  })

  it('POST /logs stores a line that GET /logs returns at once, filtered by driver, runid and pipeline', async () => {
    const posted = await api(stack.url, 'POST', '/logs', {
      driver: 'external',
      runid: 'run-1',
      pipeline: 'ci',
      message: 'from another language',
    })
    expect(posted.status).toBe(201)
    await api(stack.url, 'POST', '/logs', { driver: 'other', runid: 'run-1', message: 'second driver' })
    expect((await api(stack.url, 'GET', '/logs?driver=external&runid=run-1')).body.map((l: any) => l.message)).toEqual([
      'from another language',
    ])
    expect((await api(stack.url, 'GET', '/logs?runid=run-1')).body.map((l: any) => l.driver)).toEqual([
      'external',
      'other',
    ])
    expect((await api(stack.url, 'GET', '/logs?pipeline=ci')).body).toHaveLength(1)
    const bad = await api(stack.url, 'POST', '/logs', { driver: 'external', runid: 'bad run id', message: 'x' })
    expect(bad.status).toBe(400)
    expect(bad.body.errors[0].path).toBe('/runid')
  })

  it('a restarted gateway resumes its log index without losing lines written while it was down', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'conveyor-logs-'))
    try {
      let gateway = await startGateway({
        auth: false,
        connections: stack.connections,
        port: 0,
        dataDir,
        logger: createLogger('gw', 'error'),
      })
      await api(gateway.url, 'POST', '/logs', { driver: 'resume', runid: 'r', message: 'before' })
      await gateway.close()
      await stack.connections.js.publish(
        'conveyor.logs.resume.r',
        JSON.stringify({ message: 'while down', timestamp: new Date().toISOString() }),
      )
      gateway = await startGateway({
        auth: false,
        connections: stack.connections,
        port: 0,
        dataDir,
        logger: createLogger('gw', 'error'),
      })
      try {
        await api(gateway.url, 'POST', '/logs', { driver: 'resume', runid: 'r', message: 'after' })
        expect((await api(gateway.url, 'GET', '/logs?driver=resume&runid=r')).body.map((l: any) => l.message)).toEqual([
          'before',
          'while down',
          'after',
        ])
      } finally {
        await gateway.close()
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  it('drops from its index what the log stream no longer holds, as the retention of the stream removes it', async () => {
    const post = (message: string) => api(stack.url, 'POST', '/logs', { driver: 'pruner', runid: 'prune-run', message })
    for (const message of ['old 1', 'old 2']) expect((await post(message)).status).toBe(201)
    const endHeaders = natsHeaders()
    endHeaders.set('Conveyor-Log-End', '1')
    const end = await stack.connections.js.publish(
      'conveyor.logs.pruner.prune-run',
      JSON.stringify({ success: true, message: 'done' }),
      { headers: endHeaders },
    )
    const kept = await post('new 1')
    // Retention as the stream applies it: everything before this line is gone from JetStream.
    await stack.connections.jsm.streams.purge('CONVEYOR_LOGS', { seq: kept.body.seq })
    expect(end.seq).toBeLessThan(kept.body.seq)
    expect(await stack.gateway.logs.prune()).toBeGreaterThanOrEqual(3)
    const lines = await api(stack.url, 'GET', '/logs?runid=prune-run')
    expect(lines.body.map((l: any) => l.message)).toEqual(['new 1'])
    expect((await api(stack.url, 'GET', '/logs?driver=pruner')).body.map((l: any) => l.message)).toEqual(['new 1'])
    expect(await stack.gateway.logs.ends('prune-run')).toEqual([])
    expect(await stack.gateway.logs.prune()).toBe(0)
  })
})
