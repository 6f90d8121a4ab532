import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, startStack, type Stack } from './harness.ts'
import { ConveyorProcess } from './processes.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack()
})
afterAll(async () => stack?.close())

describe('resource definitions', () => {
  it('compiles a schema once per definition revision and validates new resources against the latest one', async () => {
    const v1 = await api(stack.url, 'POST', '/resource-definitions', {
      name: 'svc',
      version: '1',
      schema: { type: 'object', properties: { port: { type: 'integer' } } },
    })
    expect(v1.status).toBe(201)
    const first = await stack.gateway.definitions.compiled('svc')
    expect(await stack.gateway.definitions.compiled('svc')).toBe(first)
    expect(await stack.gateway.definitions.compiled('svc', { fresh: true })).toBe(first)
    expect(
      (await api(stack.url, 'POST', '/resources', { name: 'a', resource: 'svc', spec: { port: 80 } })).status,
    ).toBe(201)

    const v2 = await api(stack.url, 'PUT', '/resource-definitions/svc', {
      ...v1.body,
      version: '2',
      schema: { type: 'object', required: ['image'], properties: { image: { type: 'string' } } },
    })
    expect(v2.status).toBe(200)
    expect(v2.body.metadata).toMatchObject({ version: 2, uid: v1.body.metadata.uid })
    expect(v2.body.metadata.revision).toBeGreaterThan(v1.body.metadata.revision)
    const second = await stack.gateway.definitions.compiled('svc')
    expect(second).not.toBe(first)
    expect(second!.revision).toBe(v2.body.metadata.revision)
    const refused = await api(stack.url, 'POST', '/resources', { name: 'b', resource: 'svc', spec: { port: 80 } })
    expect(refused.status).toBe(400)
    expect(refused.body.errors).toEqual([{ path: '/spec/image', message: 'is required' }])
    expect((await api(stack.url, 'PUT', '/resource-definitions/svc', v1.body)).status).toBe(409)
  })

  it('a definition changed by another gateway is picked up at the next write (the create compares its revision)', async () => {
    await api(stack.url, 'POST', '/resource-definitions', { name: 'shared', version: '1', schema: { type: 'object' } })
    expect((await api(stack.url, 'POST', '/resources', { name: 'first', resource: 'shared', spec: {} })).status).toBe(
      201,
    )
    await stack.gateway.definitions.compiled('shared')
    // Change the schema behind this gateway's cache, as another gateway would.
    const raw = JSON.parse((await stack.connections.etcd.get('/conveyor/definitions/shared').string())!)
    await stack.connections.etcd
      .put('/conveyor/definitions/shared')
      .value(JSON.stringify({ ...raw, schema: { type: 'object', required: ['must'] } }))
    const refused = await api(stack.url, 'POST', '/resources', { name: 'second', resource: 'shared', spec: {} })
    expect(refused.status).toBe(400)
    expect(refused.body.errors).toEqual([{ path: '/spec/must', message: 'is required' }])
  })

  it('apply creates then replaces; draft-07 schemas are accepted; unknown $schema is refused', async () => {
    const body = {
      name: 'applied',
      version: '1',
      schema: { $schema: 'http://json-schema.org/draft-07/schema#', type: 'object' },
    }
    expect((await api(stack.url, 'POST', '/resource-definitions/apply', body)).status).toBe(201)
    expect((await api(stack.url, 'POST', '/resource-definitions/apply/', { ...body, version: '2' })).status).toBe(200)
    expect((await api(stack.url, 'GET', '/resource-definitions/applied')).body.version).toBe('2')
    const unknown = await api(stack.url, 'POST', '/resource-definitions', {
      name: 'odd',
      version: '1',
      schema: { $schema: 'http://example.invalid/mine', type: 'object' },
    })
    expect(unknown.status).toBe(400)
    expect(unknown.body.errors[0].path).toBe('/schema/$schema')
    const list = await api(stack.url, 'GET', '/resource-definitions/')
    expect(list.body.items.map((d: any) => d.name)).toEqual(expect.arrayContaining(['applied', 'svc']))
  })

  it('deletes an unused definition', async () => {
    expect((await api(stack.url, 'DELETE', '/resource-definitions/applied')).status).toBe(200)
    expect((await api(stack.url, 'GET', '/resource-definitions/applied')).status).toBe(404)
  })
})

describe('gateway start-up', () => {
  it('refuses the slow JavaScript fallback of uWebSockets.js with one clear line', async () => {
    const gateway = new ConveyorProcess(['gateway', '--port', '0'], {
      ...stack.env,
      UWS_USE_FALLBACK: '1',
      CONVEYOR_DATA_DIR: '/tmp/conveyor-unused',
    })
    expect((await gateway.exited).code).toBe(1)
    expect(gateway.output.trim()).toMatch(/^conveyor: uWebSockets\.js has no native build/)
  })
})
