import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { startNatsServer } from '../runtime/servers/nats-server.ts'

let stack: Stack
let url: string
const schema = {
  type: 'object',
  required: ['repository', 'branch'],
  properties: {
    repository: { type: 'string', minLength: 3 },
    branch: { type: 'string' },
    replicas: { type: 'integer', minimum: 1 },
  },
  additionalProperties: false,
}

beforeAll(async () => {
  stack = await startStack()
  url = stack.url
  expect((await api(url, 'POST', '/resource-definitions', { name: 'build', version: '1.0.0', schema })).status).toBe(
    201,
  )
})
afterAll(async () => stack?.close())

const expectProblem = (response: { status: number; body: any; headers: Headers }, status: number) => {
  expect(response.status).toBe(status)
  expect(response.headers.get('content-type')).toBe('application/problem+json')
  expect(response.body).toMatchObject({
    status,
    title: expect.any(String),
    detail: expect.any(String),
    type: expect.stringMatching(/^urn:conveyor:problem:/),
  })
}

describe('bad input gets a clear 4xx, never a 500', () => {
  it('malformed JSON is 400 saying where it broke', async () => {
    for (const path of ['/resource-definitions', '/resources', '/logs']) {
      const response = await api(url, 'POST', path, '{"name": "x",')
      expectProblem(response, 400)
      expect(response.body.detail).toMatch(/malformed JSON/)
      expect(response.body.errors[0].path).toBe('/')
    }
  })

  it('a broken schema is refused when the definition is saved, naming the path', async () => {
    const top = await api(url, 'POST', '/resource-definitions', {
      name: 'broken',
      version: '1',
      schema: { type: 'strin' },
    })
    expectProblem(top, 400)
    expect(top.body.errors).toContainEqual({ path: '/schema/type', message: expect.stringMatching(/must be one of/) })
    const nested = await api(url, 'POST', '/resource-definitions', {
      name: 'broken',
      version: '1',
      schema: { type: 'object', properties: { a: { type: 'integre' }, b: { minLength: -1 } } },
    })
    expectProblem(nested, 400)
    expect(nested.body.errors.map((e: any) => e.path)).toEqual(
      expect.arrayContaining(['/schema/properties/a/type', '/schema/properties/b/minLength']),
    )
    expect((await api(url, 'GET', '/resource-definitions/broken')).status).toBe(404)
  })

  it('a spec that fails its schema is 400 listing every failing path', async () => {
    const response = await api(url, 'POST', '/resources', {
      name: 'app',
      resource: 'build',
      spec: { repository: 'x', replicas: 0, extra: true },
    })
    expectProblem(response, 400)
    expect(response.body.errors.map((e: any) => e.path).sort()).toEqual([
      '/spec/branch',
      '/spec/extra',
      '/spec/replicas',
      '/spec/repository',
    ])
  })

  it('body fields of the wrong shape are 400 naming each field', async () => {
    const response = await api(url, 'POST', '/resources', { name: 5, spec: 'nope' })
    expectProblem(response, 400)
    expect(response.body.errors.map((e: any) => e.path)).toEqual(
      expect.arrayContaining(['/name', '/resource', '/spec']),
    )
  })

  it('names must match the DNS-label pattern and be at most 63 characters', async () => {
    for (const name of ['Upper', '-lead', 'trail-', 'under_score', 'a'.repeat(64), '']) {
      const response = await api(url, 'POST', '/resources', {
        name,
        resource: 'build',
        spec: { repository: 'abc', branch: 'main' },
      })
      expectProblem(response, 400)
      expect(response.body.errors[0].path).toBe('/name')
    }
    expect(
      (
        await api(url, 'POST', '/resources', {
          name: 'a'.repeat(63),
          resource: 'build',
          spec: { repository: 'abc', branch: 'main' },
        })
      ).status,
    ).toBe(201)
    expectProblem(await api(url, 'GET', '/resources/build/Bad_Name'), 400)
  })

  it('an unknown definition is 404', async () => {
    const response = await api(url, 'POST', '/resources', { name: 'app', resource: 'nothing', spec: {} })
    expectProblem(response, 404)
    expect(response.body.detail).toMatch(/resource definition nothing not found/)
  })

  it('a duplicate is 409, for resources and definitions', async () => {
    const body = { name: 'dup', resource: 'build', spec: { repository: 'abc', branch: 'main' } }
    expect((await api(url, 'POST', '/resources', body)).status).toBe(201)
    expectProblem(await api(url, 'POST', '/resources', body), 409)
    expectProblem(await api(url, 'POST', '/resource-definitions', { name: 'build', version: '2', schema }), 409)
  })

  it('a stale metadata.revision is 409, a stale If-Match 412', async () => {
    const created = await api(url, 'POST', '/resources', {
      name: 'rev',
      resource: 'build',
      spec: { repository: 'abc', branch: 'main' },
    })
    const edited = { ...created.body, spec: { ...created.body.spec, branch: 'dev' } }
    const first = await api(url, 'PUT', '/resources/build/rev', edited)
    expect(first.status).toBe(200)
    expect(first.body.metadata.version).toBe(2)
    expect(first.body.spec.branch).toBe('dev')
    expectProblem(await api(url, 'PUT', '/resources/build/rev', edited), 409)
    expectProblem(
      await api(
        url,
        'PUT',
        '/resources/build/rev',
        { ...first.body, spec: created.body.spec },
        { 'If-Match': `"${created.body.metadata.revision}"` },
      ),
      412,
    )
    expectProblem(
      await api(url, 'DELETE', '/resources/build/rev', undefined, {
        'If-Match': String(created.body.metadata.revision),
      }),
      412,
    )
    expect(
      (
        await api(
          url,
          'PUT',
          '/resources/build/rev',
          { ...first.body, spec: created.body.spec },
          { 'If-Match': String(first.body.metadata.revision) },
        )
      ).status,
    ).toBe(200)
  })

  it('a body over the limit is 413', async () => {
    const response = await api(url, 'POST', '/resources', {
      name: 'big',
      resource: 'build',
      spec: { repository: 'x'.repeat(300 * 1024), branch: 'main' },
    })
    expect(response.status).toBe(413)
    expect(response.body.status).toBe(413)
  })

  it('missing things are 404, on every read, update and delete route', async () => {
    expectProblem(await api(url, 'GET', '/resources/build/ghost'), 404)
    expectProblem(await api(url, 'GET', '/resources/build/ghost/1'), 404)
    expectProblem(
      await api(url, 'PUT', '/resources/build/ghost', {
        name: 'ghost',
        resource: 'build',
        spec: { repository: 'abc', branch: 'main' },
      }),
      404,
    )
    expectProblem(await api(url, 'DELETE', '/resources/build/ghost'), 404)
    expectProblem(await api(url, 'GET', '/resource-definitions/ghost'), 404)
    expectProblem(await api(url, 'DELETE', '/resource-definitions/ghost'), 404)
    expectProblem(await api(url, 'GET', '/no/such/route'), 404)
  })

  it('a wrong method is 405 with Allow, a bad version or query is 400', async () => {
    const response = await api(url, 'PATCH', '/resources')
    expectProblem(response, 405)
    expect(response.headers.get('allow')).toContain('POST')
    expectProblem(await api(url, 'GET', '/resources/build/dup/two'), 400)
    expectProblem(await api(url, 'GET', '/resources/build?limit=-3'), 400)
    expectProblem(await api(url, 'GET', '/resources/build?labelSelector=a=%3D%3D'), 400)
    expectProblem(await api(url, 'GET', '/logs'), 400)
    expectProblem(
      await api(
        url,
        'PUT',
        '/resources/build/dup',
        { name: 'dup', resource: 'build', spec: {} },
        { 'If-Match': 'yesterday' },
      ),
      400,
    )
  })

  it('a definition that still has resources cannot be deleted', async () => {
    const response = await api(url, 'DELETE', '/resource-definitions/build')
    expectProblem(response, 409)
    expect(response.body.detail).toMatch(/still has/)
  })
})

describe('servers going away', () => {
  it('answers 503 when NATS or etcd is down, and recovers when NATS returns', async () => {
    const own = await startStack()
    try {
      expect(
        (await api(own.url, 'POST', '/resource-definitions', { name: 'svc', version: '1', schema: { type: 'object' } }))
          .status,
      ).toBe(201)
      await own.servers.nats.stop()
      const natsDown = await api(own.url, 'POST', '/resources', { name: 'a', resource: 'svc', spec: {} })
      expectProblem(natsDown, 503)
      expect((await api(own.url, 'GET', '/ready')).status).toBe(503)
      const nats = await startNatsServer({
        port: own.servers.nats.port,
        monitorPort: 0,
        dataDir: join(own.servers.dataDir, 'nats'),
      })
      try {
        await eventually(
          async () => ((await api(own.url, 'GET', '/ready')).status === 200 ? true : undefined),
          'the gateway to reconnect to NATS',
        )
        expect((await api(own.url, 'POST', '/resources', { name: 'a', resource: 'svc', spec: {} })).status).toBe(201)
      } finally {
        await nats.stop()
      }
      await own.servers.etcd.stop()
      expectProblem(await api(own.url, 'GET', '/resources/svc/a'), 503)
      expectProblem(await api(own.url, 'GET', '/resource-definitions'), 503)
      expect((await api(own.url, 'GET', '/health')).status).toBe(200)
    } finally {
      await own.close()
    }
  })
})
