import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { headers as natsHeaders } from '@nats-io/transport-node'
import { defineDriver, runDriver } from 'conveyor'
import { api, eventually, startStack, type Stack } from './harness.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack({ worker: true })
})
afterAll(async () => stack?.close())

describe('hostile or unusual input never crashes the gateway or yields a 500', () => {
  it('a malformed escape in a stream path is a 400 and the gateway keeps serving', async () => {
    const response = await fetch(`${stack.url}/logs/streams/a/%E0%A4%A`)
    expect(response.status).toBe(400)
    expect((await api(stack.url, 'GET', '/health')).status).toBe(200)
  })

  it('schemas that cannot validate anything are refused when saved', async () => {
    for (const schema of [
      { $ref: '#' },
      { $defs: { a: { $ref: '#/$defs/b' }, b: { $ref: '#/$defs/a' } }, $ref: '#/$defs/a' },
      { type: 'object', properties: { x: { $ref: '#/$defs/missing' } } },
    ]) {
      const response = await api(stack.url, 'POST', '/resource-definitions', { name: 'loop', version: '1', schema })
      expect(response.status).toBe(400)
      expect(response.body.errors[0].path).toBe('/schema')
    }
  })

  it('JSON nested deeper than 64 levels is a 400, whatever the schema', async () => {
    await api(stack.url, 'POST', '/resource-definitions', { name: 'deep', version: '1', schema: { type: 'object' } })
    let spec: unknown = {}
    for (let i = 0; i < 2000; i++) spec = { a: spec }
    const response = await api(stack.url, 'POST', '/resources', { name: 'deep', resource: 'deep', spec })
    expect(response.status).toBe(400)
    expect(response.body.errors[0].message).toMatch(/nested deeper than 64/)
  })

  it('a label selector does not match inherited object keys', async () => {
    await api(stack.url, 'POST', '/resources', { name: 'plain', resource: 'deep', spec: {} })
    expect((await api(stack.url, 'GET', '/resources/deep?labelSelector=constructor')).body.items).toEqual([])
    expect((await api(stack.url, 'GET', '/resources/deep?labelSelector=!toString')).body.items).toHaveLength(1)
  })
})

describe('PUT takes the object as GET returned it', () => {
  it('keeps a definition\u2019s labels, and applies edits made in metadata.labels of a resource', async () => {
    const created = await api(stack.url, 'POST', '/resource-definitions', {
      name: 'labelled',
      version: '1',
      schema: { type: 'object' },
      labels: { team: 'a' },
    })
    const put = await api(stack.url, 'PUT', '/resource-definitions/labelled', created.body)
    expect(put.body.metadata.labels).toEqual({ team: 'a' })
    const resource = await api(stack.url, 'POST', '/resources', {
      name: 'r',
      resource: 'labelled',
      labels: { a: '1' },
      spec: {},
    })
    const edited = { ...resource.body, metadata: { ...resource.body.metadata, labels: { a: '2' } } }
    expect((await api(stack.url, 'PUT', '/resources/labelled/r', edited)).body.metadata.labels).toEqual({ a: '2' })
    expect((await api(stack.url, 'GET', '/resources/labelled/r')).body.metadata.labels).toEqual({ a: '2' })
  })
})

describe('races', () => {
  it('deleting a definition while resources of its type are created never leaves an orphan', async () => {
    for (let round = 0; round < 15; round++) {
      const type = `race-${round}`
      await api(stack.url, 'POST', '/resource-definitions', { name: type, version: '1', schema: { type: 'object' } })
      const [deleted, created] = await Promise.all([
        api(stack.url, 'DELETE', `/resource-definitions/${type}`),
        api(stack.url, 'POST', '/resources', { name: 'x', resource: type, spec: {} }),
      ])
      expect([deleted.status, created.status].sort()).not.toEqual([200, 201])
      const definitionExists = (await api(stack.url, 'GET', `/resource-definitions/${type}`)).status === 200
      const resources = (await api(stack.url, 'GET', `/resources/${type}`)).body.items
      if (!definitionExists) expect(resources).toEqual([])
    }
  })

  it('a driver with concurrency 2 never runs one event twice at once, even when runs outlast the ack wait', async () => {
    await api(stack.url, 'POST', '/resource-definitions', { name: 'slow', version: '1', schema: { type: 'object' } })
    const runs: string[] = []
    let running = 0
    let most = 0
    const handle = await runDriver(
      defineDriver({
        name: 'slowpoke',
        resources: ['slow'],
        concurrency: 2,
        async reconcile(ctx) {
          runs.push(ctx.resource.name)
          running++
          most = Math.max(most, running)
          await new Promise((resolve) => setTimeout(resolve, 2500))
          running--
          return { success: true }
        },
      }),
      { natsUrl: stack.servers.natsUrl, natsAuth: stack.servers.natsAuth, ackWaitMs: 1000 },
    )
    try {
      for (const name of ['a', 'b', 'c', 'd'])
        await api(stack.url, 'POST', '/resources', { name, resource: 'slow', spec: {} })
      await eventually(
        async () =>
          (await api(stack.url, 'GET', '/resources/slow')).body.items.every((r: any) => r.status.drivers.slowpoke)
            ? true
            : undefined,
        'all four outcomes',
        20_000,
      )
      expect(runs.sort()).toEqual(['a', 'b', 'c', 'd'])
      expect(most).toBe(2)
    } finally {
      await handle.close()
    }
  })
})

describe('run-wide log streams', () => {
  it('do not end when one of the run\u2019s drivers ends', async () => {
    await api(stack.url, 'POST', '/logs', { driver: 'first', runid: 'shared-run', message: 'a' })
    const end = natsHeaders()
    end.set('Conveyor-Log-End', '1')
    await stack.connections.js.publish(
      'conveyor.logs.first.shared-run',
      JSON.stringify({ success: true, message: 'done' }),
      { headers: end },
    )
    await eventually(
      async () => ((await stack.gateway.logs.ends('shared-run')).length === 1 ? true : undefined),
      'the first driver\u2019s end to be stored',
    )
    const sse = fetch(`${stack.url}/logs/pipeline/shared-run`)
    const reader = (await sse).body!.getReader()
    await api(stack.url, 'POST', '/logs', { driver: 'second', runid: 'shared-run', message: 'b' })
    let text = ''
    const decoder = new TextDecoder()
    while (!text.includes('"message":"b"')) text += decoder.decode((await reader.read()).value)
    expect(text).not.toContain('event: end')
    await reader.cancel()
  })
})
