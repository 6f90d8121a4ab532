import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { defineDriver, runDriver } from 'conveyor'
import { createLogger } from '../runtime/logger.ts'
import { api, eventually, startStack, type Stack } from './harness.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack({ worker: true })
})
afterAll(async () => {
  await stack?.close()
})

/** What one subscription to a log stream got, and how it ended. */
interface Collected {
  readonly items: any[]
  readonly how: string
  /** The gateway could not tell now whether the run exists (etcd did not answer in time): a client tries again. */
  readonly unavailable: boolean
}

/** Subscribes once to a pipeline log stream (SSE or WebSocket) and collects it until the server ends it. */
function subscribeOnce(url: string, over: 'sse' | 'ws'): Promise<Collected> {
  if (over === 'ws') {
    return new Promise((resolve, reject) => {
      const items: any[] = []
      const socket = new WebSocket(url.replace('http://', 'ws://'))
      // A refused upgrade: its status and problem, instead of ws's bare "Unexpected server response".
      socket.on('unexpected-response', (_request, response) => {
        let body = ''
        response.on('data', (chunk: Buffer) => (body += chunk.toString()))
        response.on('end', () =>
          resolve({
            items,
            how: `the upgrade was answered ${response.statusCode} ${body}`,
            unavailable: response.statusCode === 503,
          }),
        )
      })
      socket.on('message', (data) => items.push(JSON.parse(data.toString())))
      socket.on('close', (code, reason) => {
        const last = items.at(-1)
        resolve({
          items,
          how: `the socket closed (${code} ${reason.toString()}) after ${JSON.stringify(last)}`,
          // A refusal after the upgrade, before any line ({event:'error', code:'unavailable'}, then the
          // close), or a connection lost without a close frame (1006): a client reconnects after its last line.
          unavailable: (items.length === 1 && last?.event === 'error' && last.code === 'unavailable') || code === 1006,
        })
      })
      socket.on('error', reject)
    })
  }
  return fetch(url).then(async (response) => {
    const text = await response.text()
    if (response.status !== 200)
      return { items: [], how: `answered ${response.status} ${text}`, unavailable: response.status === 503 }
    const items = text
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => JSON.parse(line.slice(6)))
    return { items, how: `the stream ended after ${JSON.stringify(items.at(-1))}`, unavailable: false }
  })
}

/**
 * Collects a pipeline log stream until the server ends it, as a client does: a 503 (the gateway
 * could not ask etcd whether the run exists, as on a loaded machine) or a lost connection is tried
 * again after the last line received (`?after=`), until a deadline; anything else is the answer.
 */
async function collect(url: string, over: 'sse' | 'ws'): Promise<Collected> {
  const kept: any[] = []
  const got = await eventually(
    async () => {
      const after = kept.at(-1)?.seq ?? 0
      const attempt = await subscribeOnce(`${url}?after=${after}`, over).catch((error: unknown) => ({ error }))
      if ('unavailable' in attempt && attempt.unavailable) {
        kept.push(...attempt.items.filter((item) => item.event !== 'error'))
        throw new Error(`${over} ${url}: ${attempt.how}`)
      }
      return attempt
    },
    `the ${over} log stream ${url} to be served`,
    60_000,
  )
  if ('error' in got) throw got.error
  return { ...got, items: [...kept, ...got.items] }
}

describe("Conveyor's pipeline tutorial, unchanged", () => {
  it('definition → pipeline of four drivers → resource with pipeline → drivers in order → the run log streams every step, then ends', async () => {
    const order: string[] = []
    for (const name of ['git-cloner', 'dependency-installer', 'test-runner', 'app-builder']) {
      stack.drivers.push(
        await runDriver(
          defineDriver({
            name,
            resources: ['flutter-app'],
            async reconcile(ctx) {
              order.push(name)
              for (let i = 1; i <= 5; i++) {
                ctx.log(`${name}: ${ctx.resource.spec.repository} line ${i}`)
                await new Promise((resolve) => setTimeout(resolve, 10))
              }
              return { success: true, message: `${name} finished` }
            },
          }),
          { connections: stack.connections, logger: createLogger(name, 'error') },
        ),
      )
    }

    // The tutorial's requests, trailing slashes included: steps without `needs` run in order.
    const definition = await api(stack.url, 'POST', '/resource-definitions/', {
      name: 'flutter-app',
      description: 'A Flutter application to build',
      version: '0.0.1',
      schema: {
        type: 'object',
        properties: { repository: { type: 'string' }, branch: { type: 'string' } },
        required: ['repository'],
      },
    })
    expect(definition.status).toBe(201)
    const pipeline = await api(stack.url, 'POST', '/pipelines/', {
      name: 'flutter-pipeline',
      resource: 'flutter-app',
      description: 'clone, install, test, build',
      steps: [
        { id: 'clone', name: 'Clone repository', driver: 'git-cloner' },
        { id: 'install', name: 'Install dependencies', driver: 'dependency-installer' },
        { id: 'test', name: 'Run tests', driver: 'test-runner' },
        { id: 'build', name: 'Build app', driver: 'app-builder' },
      ],
    })
    expect(pipeline.status).toBe(201)
    const resource = await api(stack.url, 'POST', '/resources/', {
      name: 'my-app',
      resource: 'flutter-app',
      pipeline: 'flutter-pipeline',
      spec: { repository: 'https://example.invalid/my-app.git', branch: 'main' },
    })
    expect(resource.status).toBe(201)
    expect(resource.body).toMatchObject({
      name: 'my-app',
      resource: 'flutter-app',
      pipeline: 'flutter-pipeline',
      version: 1,
    })
    const runid = resource.body.runid
    expect(runid).toEqual(expect.any(String))

    // Subscribers that join while the run is in progress: backlog, then live lines, then the end.
    const [sse, ws] = await Promise.all([
      collect(`${stack.url}/logs/pipeline/${runid}`, 'sse'),
      collect(`${stack.url}/logs/pipeline/${runid}/`, 'ws'),
    ])
    expect(order).toEqual(['git-cloner', 'dependency-installer', 'test-runner', 'app-builder'])
    for (const [over, { items, how }] of [
      ['sse', sse],
      ['ws', ws],
    ] as const) {
      const end = items.at(-1)
      expect(end, `${over}: ${how}`).toMatchObject({ event: 'end', success: true, runid })
      const lines = items.slice(0, -1)
      expect(lines.map((l) => l.message)).toEqual(
        order.flatMap((name) =>
          Array.from({ length: 5 }, (_, i) => `${name}: https://example.invalid/my-app.git line ${i + 1}`),
        ),
      )
      expect(lines.map((l) => l.step)).toEqual(
        ['clone', 'install', 'test', 'build'].flatMap((step) => Array(5).fill(step)),
      )
      const seqs = lines.map((l) => l.seq)
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
    }
    const done = await api(stack.url, 'GET', '/resources/flutter-app/my-app')
    expect(done.body.status).toMatchObject({
      state: 'succeeded',
      pipeline: { name: 'flutter-pipeline', status: 'succeeded' },
    })
    expect(done.body.status.steps.map((s: any) => `${s.id}:${s.status}:${s.message}`)).toEqual([
      'clone:succeeded:git-cloner finished',
      'install:succeeded:dependency-installer finished',
      'test:succeeded:test-runner finished',
      'build:succeeded:app-builder finished',
    ])
    // A subscriber after the run ends gets the whole log and the end at once.
    const late = await collect(`${stack.url}/logs/pipeline/${runid}`, 'sse')
    expect(late.items, late.how).toHaveLength(21)
  })
})
