import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ApiError, CLIENT_ROUTES, createClient, defineDriver, runDriver, type WatchEvent } from 'conveyor'
import { eventually, startSecuredGateway, startStack, type SecuredGateway, type Stack } from './harness.ts'

let stack: Stack
let secured: SecuredGateway
let admin: string

beforeAll(async () => {
  stack = await startStack({ worker: true })
  secured = await startSecuredGateway(stack)
  admin = secured.admin
})
afterAll(async () => {
  await secured?.close()
  await stack?.close()
})

/** Takes events from a watch until `until` holds for what was taken, leaving the watch open. */
async function take(
  watch: AsyncGenerator<WatchEvent>,
  until: (events: WatchEvent[]) => boolean,
): Promise<WatchEvent[]> {
  const events: WatchEvent[] = []
  for (let next = await watch.next(); !next.done; next = await watch.next()) {
    events.push(next.value)
    if (until(events)) break
  }
  return events
}

describe('the typed client', () => {
  it('names every route the gateway registers', () => {
    const covered = new Set<string>(Object.values(CLIENT_ROUTES))
    // The API reference page is for browsers, not a client call.
    expect(secured.gateway.routes.filter((route) => !covered.has(route) && !route.startsWith('GET /docs'))).toEqual([])
  })

  it('creates, reads, updates and deletes through every object kind, and turns refusals into typed errors', async () => {
    const client = createClient({ url: secured.url, token: admin })
    expect(await client.health()).toMatchObject({ status: 'ok' })
    const definition = await client.definitions.create({ name: 'site', schema: { type: 'object' } })
    expect(definition.metadata.revision).toBeGreaterThan(0)
    expect((await client.definitions.apply({ name: 'site', schema: { type: 'object' } })).created).toBe(false)
    expect((await client.definitions.list()).map((d) => d.name)).toContain('site')
    const pipeline = await client.pipelines.create({
      name: 'publish',
      resource: 'site',
      steps: [{ id: 'render', driver: 'renderer' }],
    })
    expect(pipeline.warnings?.[0]).toMatch(/renderer/)

    const created = await client.resources.create({ name: 'home', resource: 'site', spec: { v: 1 } })
    const updated = await client.resources.update(
      'site',
      'home',
      { spec: { v: 2 } },
      { ifMatch: created.metadata.revision },
    )
    expect(updated.spec).toEqual({ v: 2 })
    const stale = await client.resources
      .update('site', 'home', { spec: { v: 3 } }, { ifMatch: created.metadata.revision })
      .catch((error: unknown) => error)
    expect(stale).toBeInstanceOf(ApiError)
    expect(stale).toMatchObject({ status: 412, code: 'precondition-failed' })

    const typo = await client.resources
      .create({ name: 'typo', resource: 'site', spec: {}, spce: {} } as never)
      .catch((error: unknown) => error)
    expect(typo).toMatchObject({ status: 400, code: 'invalid', errors: [{ path: '/spce', message: 'is not allowed' }] })
    expect(await client.resources.get('nosuch', 'x').catch((error: unknown) => error)).toMatchObject({
      status: 404,
      code: 'not-found',
    })
    for (let i = 0; i < 5; i++) await client.resources.create({ name: `page-${i}`, resource: 'site', spec: {} })
    const names: string[] = []
    for await (const resource of client.resources.all('site')) names.push(resource.name)
    expect(names.sort()).toEqual(['home', 'page-0', 'page-1', 'page-2', 'page-3', 'page-4'])
    expect((await client.resources.list('site', { limit: 2 })).continue).toEqual(expect.any(String))
    expect(await client.resources.versions('site', 'home')).toEqual([1, 2])
    expect((await client.resources.version('site', 'home', 1)).spec).toEqual({ v: 1 })
    const history = await client.resources.history('site', 'home', { kind: ['created', 'updated'] })
    expect(history.items.map((item) => item.kind)).toEqual(['created', 'updated'])
    expect((await client.resources.actor('site', 'home')).state).toEqual(expect.any(String))
    await client.resources.delete('site', 'home')
    expect(await client.resources.get('site', 'home').catch((error: unknown) => error)).toMatchObject({ status: 404 })

    const viewer = (await client.tokens.create({ role: 'viewer' })).token
    expect((await client.tokens.list()).length).toBeGreaterThanOrEqual(2)
    const readOnly = createClient({ url: secured.url, token: viewer })
    expect((await readOnly.resources.list('site')).items.length).toBe(5)
    expect(await readOnly.definitions.delete('site').catch((error: unknown) => error)).toMatchObject({ status: 403 })
    expect(
      await createClient({ url: secured.url })
        .resources.list('site')
        .catch((e: unknown) => e),
    ).toMatchObject({
      status: 401,
    })
  })

  it('watches a type as an async iterable over an authenticated WebSocket: the list, then each change', async () => {
    const client = createClient({ url: secured.url, token: admin })
    await client.definitions.create({ name: 'svc', schema: { type: 'object' } })
    await client.resources.create({ name: 'a', resource: 'svc', spec: {} })
    const controller = new AbortController()
    const watch = client.resources.watch('svc', { signal: controller.signal })
    const listed = await take(watch, (events) => events.some((e) => e.type === 'list' && !e.more))
    expect(listed.flatMap((e) => (e.type === 'list' ? e.items.map((i) => i.name) : []))).toEqual(['a'])
    await client.resources.create({ name: 'b', resource: 'svc', spec: {} })
    await client.resources.delete('svc', 'a')
    const changes = await take(watch, (events) => events.length === 2)
    expect(changes.map((c) => (c.type === 'change' ? `${c.kind} ${c.object.name}` : c.type))).toEqual([
      'created b',
      'deleted a',
    ])
    controller.abort()
    // A watch without a token is refused with the reason, not retried forever.
    const refused = await take(createClient({ url: secured.url }).resources.watch('svc'), () => true).catch(
      (error: unknown) => error,
    )
    expect(refused).toMatchObject({ status: 401 })
  })

  it("follows a pipeline run's log to its end", async () => {
    const client = createClient({ url: stack.url })
    await client.definitions.create({ name: 'job', schema: { type: 'object' } })
    await client.pipelines.create({ name: 'job-run', resource: 'job', steps: [{ id: 'work', driver: 'worker-bee' }] })
    stack.drivers.push(
      await runDriver(
        defineDriver({
          name: 'worker-bee',
          resources: ['job'],
          async reconcile(ctx) {
            for (let i = 1; i <= 3; i++) await ctx.log(`line ${i}`)
            return { success: true, message: 'done' }
          },
        }),
        { connections: stack.connections },
      ),
    )
    const resource = (await client.resources.create({
      name: 'j1',
      resource: 'job',
      pipeline: 'job-run',
      spec: {},
    })) as {
      runid?: string
    }
    const runid = await eventually(() => resource.runid, 'the run id')
    const items = []
    for await (const item of client.logs.follow({ runid })) items.push(item)
    expect(items.map((i) => (i.type === 'line' ? i.line.message : `end ${i.end.success}`))).toEqual([
      'line 1',
      'line 2',
      'line 3',
      'end true',
    ])
  })
})
