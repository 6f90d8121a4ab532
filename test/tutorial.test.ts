import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { defineDriver, runDriver } from 'conveyor'
import { createLogger } from '../runtime/logger.ts'
import { api, startStack, type Stack } from './harness.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack({ worker: true })
})
afterAll(async () => {
  await stack?.close()
})

/** Collects a pipeline log stream (SSE or WebSocket) until the server ends it. */
function collect(url: string, over: 'sse' | 'ws'): Promise<any[]> {
  if (over === 'ws') {
    return new Promise((resolve, reject) => {
      const items: any[] = []
      const socket = new WebSocket(url.replace('http://', 'ws://'))
      socket.on('message', (data) => items.push(JSON.parse(data.toString())))
      socket.on('close', () => resolve(items))
      socket.on('error', reject)
    })
  }
  return fetch(url).then(async (response) =>
    (await response.text())
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => JSON.parse(line.slice(6))),
  )
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
    for (const items of [sse, ws]) {
      const end = items.at(-1)
      expect(end).toMatchObject({ event: 'end', success: true, runid })
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
    expect(late).toHaveLength(21)
  })
})
