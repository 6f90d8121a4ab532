import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, startStack, type Stack } from './harness.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack()
  const definition = await api(stack.url, 'POST', '/resource-definitions', {
    name: 'app',
    version: '1',
    schema: { type: 'object', properties: { repo: { type: 'string' } } },
  })
  expect(definition.status).toBe(201)
  const pipeline = await api(stack.url, 'POST', '/pipelines', {
    name: 'ship',
    resource: 'app',
    steps: [{ id: 'build', driver: 'builder', timeout: '1h30m' }],
  })
  expect(pipeline.status).toBe(201)
  expect(
    (await api(stack.url, 'POST', '/resources', { name: 'web', resource: 'app', spec: { repo: 'r' } })).status,
  ).toBe(201)
})
afterAll(async () => {
  await stack?.close()
})

describe('a strict API', () => {
  it('refuses unknown fields with 400 naming each, and takes back what GET returned', async () => {
    const typos = await api(stack.url, 'POST', '/resources', {
      name: 'typo',
      resource: 'app',
      spec: {},
      spce: { repo: 'r' },
      lables: { team: 'a' },
    })
    expect(typos.status).toBe(400)
    expect(typos.headers.get('content-type')).toBe('application/problem+json')
    expect(typos.body.errors).toEqual(
      expect.arrayContaining([
        { path: '/spce', message: 'is not allowed' },
        { path: '/lables', message: 'is not allowed' },
      ]),
    )
    const step = await api(stack.url, 'POST', '/pipelines', {
      name: 'typo',
      resource: 'app',
      steps: [{ id: 'a', driver: 'shell', command: ['true'] }],
    })
    expect(step.status).toBe(400)
    expect(step.body.errors).toContainEqual({ path: '/steps/0/command', message: 'is not allowed' })
    const definition = await api(stack.url, 'POST', '/resource-definitions', {
      name: 'typo',
      schema: {},
      lifecycel: {},
    })
    expect(definition.status).toBe(400)
    expect(definition.body.errors).toContainEqual({ path: '/lifecycel', message: 'is not allowed' })
    const metadata = await api(stack.url, 'PUT', '/resources/app/web', {
      spec: {},
      metadata: { lables: {} },
    })
    expect(metadata.status).toBe(400)
    expect(metadata.body.errors).toContainEqual({ path: '/metadata/lables', message: 'is not allowed' })

    // A PUT of the object as GET returned it (server-owned fields included) is accepted.
    for (const path of ['/resources/app/web', '/pipelines/ship', '/resource-definitions/app']) {
      const got = await api(stack.url, 'GET', path)
      expect(got.status).toBe(200)
      const put = await api(stack.url, 'PUT', path, got.body)
      expect(put.status, `${path}: ${JSON.stringify(put.body)}`).toBe(200)
    }
  })

  it('answers 404 for an unknown resource type on every route of it', async () => {
    for (const [method, path] of [
      ['GET', '/resources/nosuch'],
      ['GET', '/resources/nosuch/x'],
      ['GET', '/resources/nosuch/x/history'],
      ['GET', '/resources/nosuch/x/actor'],
      ['GET', '/resources/nosuch/x/verify'],
      ['GET', '/resources/nosuch/x/versions'],
      ['GET', '/resources/nosuch/x/1'],
      ['DELETE', '/resources/nosuch/x'],
    ] as const) {
      const reply = await api(stack.url, method, path)
      expect(reply.status, `${method} ${path}`).toBe(404)
      expect(reply.body.detail, `${method} ${path}`).toMatch(/resource type nosuch/)
    }
    const put = await api(stack.url, 'PUT', '/resources/nosuch/x', { spec: {} })
    expect(put.status).toBe(404)
    const event = await api(stack.url, 'POST', '/resources/nosuch/x/events', { type: 'GO' })
    expect(event.status).toBe(404)
    const noHistory = await api(stack.url, 'GET', '/resources/app/nosuch/history')
    expect(noHistory.status).toBe(404)
    // A known type with nothing in it is an empty list.
    expect(await api(stack.url, 'GET', '/resources/app?labelSelector=none')).toMatchObject({
      status: 200,
      body: { items: [] },
    })
  })

  it('sends an ETag with the revision; a stale If-Match is 412, a stale metadata.revision 409', async () => {
    for (const path of ['/resources/app/web', '/pipelines/ship', '/resource-definitions/app']) {
      const got = await api(stack.url, 'GET', path)
      expect(got.headers.get('etag'), path).toBe(`"${got.body.metadata.revision}"`)
      const { metadata: _, ...edited } = got.body
      const current = await api(stack.url, 'PUT', path, edited, { 'If-Match': got.headers.get('etag')! })
      expect(current.status, `${path}: ${JSON.stringify(current.body)}`).toBe(200)
      expect(current.headers.get('etag')).toBe(`"${current.body.metadata.revision}"`)
      const stale = await api(stack.url, 'PUT', path, edited, { 'If-Match': got.headers.get('etag')! })
      expect(stale.status, path).toBe(412)
      expect(stale.body).toMatchObject({ type: expect.stringContaining('precondition-failed'), status: 412 })
      const staleBody = await api(stack.url, 'PUT', path, got.body)
      expect(staleBody.status, path).toBe(409)
    }
    const got = await api(stack.url, 'GET', '/resources/app/web')
    const staleDelete = await api(stack.url, 'DELETE', '/resources/app/web', undefined, { 'If-Match': '"1"' })
    expect(staleDelete.status).toBe(412)
    expect((await api(stack.url, 'GET', '/resources/app/web')).body.metadata.revision).toBe(got.body.metadata.revision)
  })

  it('takes durations as 30s, 5m, 1h30m or milliseconds, and names those forms when one is wrong', async () => {
    for (const timeout of ['30s', '5m', '1h30m', '2h15m10s', '500ms', 90_000]) {
      const reply = await api(stack.url, 'PUT', '/pipelines/ship', {
        resource: 'app',
        steps: [{ id: 'build', driver: 'builder', timeout }],
      })
      expect(reply.status, `${timeout}: ${JSON.stringify(reply.body)}`).toBe(200)
    }
    for (const timeout of ['5 minutes', '1.5h', 'h', '', -1, 0]) {
      const reply = await api(stack.url, 'PUT', '/pipelines/ship', {
        resource: 'app',
        steps: [{ id: 'build', driver: 'builder', timeout }],
      })
      expect(reply.status, String(timeout)).toBe(400)
      expect(reply.body.errors, String(timeout)).toEqual([
        { path: '/steps/0/timeout', message: expect.stringMatching(/30s.*5m.*1h30m.*milliseconds/) },
      ])
    }
  })
})

describe('a log line, the one lenient input', () => {
  it('is stored with its unknown fields ignored, and a warning naming them', async () => {
    const reply = await api(stack.url, 'POST', '/logs', {
      driver: 'builder',
      runid: 'lenient-run',
      message: 'hello',
      level: 'info',
    })
    expect(reply.status).toBe(201)
    expect(reply.body.warnings).toEqual(['field "level" is not part of a log line: it was ignored'])
    expect(reply.headers.get('warning')).toContain('299 conveyor')
    const lines = await api(stack.url, 'GET', '/logs?runid=lenient-run')
    expect(lines.body.map((l: any) => l.message)).toEqual(['hello'])
    expect(lines.body[0].level).toBeUndefined()
  })
})
