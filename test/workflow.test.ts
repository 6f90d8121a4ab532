import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DeliverPolicy } from '@nats-io/jetstream'
import { defineDriver, runDriver, type DriverHandle } from 'conveyor'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { keys, streams, subjects } from '../runtime/keys.ts'
import type { ConveyorEvent } from '../definitions/objects.ts'

let stack: Stack
let driver: DriverHandle
const received: ConveyorEvent[] = []

beforeAll(async () => {
  stack = await startStack({ worker: true })
})
afterAll(async () => {
  await driver?.close()
  await stack?.close()
})

/** The resource's events in the stream, once at least `count` are there (publishing follows the commit). */
function eventsOf(
  type: string,
  name: string,
  count: number,
): Promise<{ event: ConveyorEvent; msgId: string | undefined }[]> {
  return eventually(async () => {
    const found = await readEvents(type, name, count)
    return found.length >= count ? found : undefined
  }, `${count} events of ${type}/${name}`)
}

async function readEvents(
  type: string,
  name: string,
  count: number,
): Promise<{ event: ConveyorEvent; msgId: string | undefined }[]> {
  const consumer = await stack.connections.js.consumers.get(streams.events, {
    filter_subjects: subjects.history(type, name),
    deliver_policy: DeliverPolicy.All,
  })
  const found: { event: ConveyorEvent; msgId: string | undefined }[] = []
  const batch = await consumer.fetch({ max_messages: count + 5, expires: 1000 })
  for await (const message of batch) {
    found.push({ event: message.json<ConveyorEvent>(), msgId: message.headers?.get('Nats-Msg-Id') })
    if (message.info.pending === 0) break
  }
  await consumer.delete().catch(() => {})
  return found
}

describe('the whole workflow: define, submit, validate, store, publish, route, execute, log', () => {
  it('runs a resource through its driver and streams the logs back', async () => {
    // 1. A resource definition: JSON Schema for spec (Conveyor's body shape, trailing slash).
    const definition = await api(stack.url, 'POST', '/resource-definitions/', {
      name: 'flutter-builder',
      version: '0.1.0',
      description: 'builds a Flutter app',
      schema: {
        type: 'object',
        required: ['repository'],
        properties: { repository: { type: 'string' }, branch: { type: 'string', default: 'main' } },
      },
    })
    expect(definition.status).toBe(201)
    expect(definition.body.metadata).toMatchObject({
      version: 1,
      revision: expect.any(Number),
      uid: expect.any(String),
    })

    // 2. A driver that serves the type.
    driver = await runDriver(
      defineDriver({
        name: 'git-cloner',
        resources: ['flutter-builder'],
        async reconcile(ctx) {
          received.push(ctx.event)
          ctx.log('cloning', ctx.resource.spec.repository)
          ctx.log('checked out', ctx.resource.spec.branch ?? 'main')
          ctx.log('done')
          return { success: true, message: 'cloned', data: { commit: 'abc123' } }
        },
      }),
      { natsUrl: stack.servers.natsUrl, natsAuth: stack.servers.natsAuth },
    )

    // 3. Submit a resource: 201 with the stored object plus runid and version.
    const created = await api(stack.url, 'POST', '/resources/', {
      name: 'my-app',
      resource: 'flutter-builder',
      labels: { team: 'mobile' },
      spec: { repository: 'https://example.invalid/app.git' },
    })
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({
      name: 'my-app',
      resource: 'flutter-builder',
      version: 1,
      runid: expect.any(String),
      spec: { repository: 'https://example.invalid/app.git' },
    })
    expect(created.body.status).toMatchObject({ state: 'pending', runid: created.body.runid })
    const { runid } = created.body
    const revision = created.body.metadata.revision

    // 4. Stored in etcd with its actor, in one transaction, at the revision the API reported.
    const stored = await stack.connections.etcd.get(keys.resource('flutter-builder', 'my-app')).exec()
    expect(Number(stored.kvs[0]!.mod_revision)).toBe(revision)
    const actor = await stack.connections.etcd.get(keys.actor('flutter-builder', 'my-app')).exec()
    expect(Number(actor.kvs[0]!.create_revision)).toBe(revision)

    // 5. Published to JetStream once, with a message id from uid and revision.
    const published = await eventsOf('flutter-builder', 'my-app', 1)
    expect(published[0]!.event).toMatchObject({ kind: 'created', revision, runid })
    expect(published[0]!.msgId).toBe(`${created.body.metadata.uid}:${revision}`)

    // 6. Routed to the driver, executed, its outcome recorded on the resource.
    const done = await eventually(async () => {
      const current = await api(stack.url, 'GET', '/resources/flutter-builder/my-app')
      return current.body.status.drivers['git-cloner'] ? current.body : undefined
    }, 'the driver outcome')
    expect(done.status.drivers['git-cloner']).toMatchObject({
      success: true,
      message: 'cloned',
      data: { commit: 'abc123' },
      runid,
      forRevision: revision,
      attempt: 1,
    })
    expect(received.map((e) => e.kind)).toEqual(['created'])

    // 7. Logs stored and streamed back, in order, ending with the run.
    const logs = await eventually(async () => {
      const response = await api(stack.url, 'GET', `/logs?driver=git-cloner&runid=${runid}`)
      return response.body.length === 3 ? response.body : undefined
    }, 'three log lines')
    expect(logs.map((l: any) => l.message)).toEqual([
      'cloning https://example.invalid/app.git',
      'checked out main',
      'done',
    ])
    expect(logs[0]).toMatchObject({ driver: 'git-cloner', runid, stream: 'log' })
    const sse = await (await fetch(`${stack.url}/logs/streams/git-cloner/${runid}`)).text()
    const events = sse.split('\n\n').filter((block) => block.includes('data:'))
    expect(events).toHaveLength(4)
    expect(events[3]).toMatch(/^id: \d+\nevent: end\ndata: .*"success":true/)

    // Without a pipeline, the built-in lifecycle follows the drivers: running once one claimed the
    // version, succeeded when every driver serving the type reported; all of it is history.
    expect(done.status.state).toBe('succeeded')
    const history = await eventsOf('flutter-builder', 'my-app', 4)
    expect(history.map((h) => [h.event.kind, h.event.to])).toEqual([
      ['created', undefined],
      ['transitioned', 'running'],
      ['driver.result', undefined],
      ['transitioned', 'succeeded'],
    ])
  })

  it('updates make a new version and run, list filters by label, delete is an event too', async () => {
    const current = await api(stack.url, 'GET', '/resources/flutter-builder/my-app')
    const updated = await api(stack.url, 'PUT', '/resources/flutter-builder/my-app/', {
      ...current.body,
      spec: { repository: 'https://example.invalid/app.git', branch: 'dev' },
      status: { state: 'forged' },
    })
    expect(updated.status).toBe(200)
    expect(updated.body.version).toBe(2)
    expect(updated.body.runid).not.toBe(current.body.runid)
    expect(updated.body.status.state).toBe('pending')
    expect((await api(stack.url, 'GET', '/resources/flutter-builder/my-app/1')).body.spec.branch).toBeUndefined()
    expect((await api(stack.url, 'GET', '/resources/flutter-builder/my-app/2')).body.spec.branch).toBe('dev')
    expect((await api(stack.url, 'GET', '/resources/flutter-builder/my-app/versions')).body.items).toEqual([1, 2])
    expect((await api(stack.url, 'GET', '/resources/flutter-builder/my-app/3')).status).toBe(404)
    await eventually(() => (received.length === 2 ? true : undefined), 'the update to reach the driver')
    expect(received[1]).toMatchObject({ kind: 'updated', version: 2 })

    await api(stack.url, 'POST', '/resources', {
      name: 'other-app',
      resource: 'flutter-builder',
      labels: { team: 'web' },
      spec: { repository: 'r' },
    })
    const mobile = await api(stack.url, 'GET', '/resources/flutter-builder?labelSelector=team%3Dmobile')
    expect(mobile.body.items.map((r: any) => r.name)).toEqual(['my-app'])
    const page1 = await api(stack.url, 'GET', '/resources/flutter-builder?limit=1')
    expect(page1.body.items.map((r: any) => r.name)).toEqual(['my-app'])
    const page2 = await api(stack.url, 'GET', `/resources/flutter-builder?limit=1&continue=${page1.body.continue}`)
    expect(page2.body.items.map((r: any) => r.name)).toEqual(['other-app'])
    expect(page2.body.continue).toBeUndefined()

    const deleted = await api(stack.url, 'DELETE', '/resources/flutter-builder/my-app')
    expect(deleted.status).toBe(200)
    expect((await api(stack.url, 'GET', '/resources/flutter-builder/my-app')).status).toBe(404)
    expect((await api(stack.url, 'GET', '/resources/flutter-builder/my-app/1')).status).toBe(404)
    const kinds = (await eventsOf('flutter-builder', 'my-app', 9)).map((h) => h.event.kind)
    expect(kinds.filter((k) => k !== 'driver.result' && k !== 'transitioned')).toEqual([
      'created',
      'updated',
      'deleted',
    ])
    await eventually(
      () => (received.some((e) => e.kind === 'deleted') ? true : undefined),
      'the delete to reach the driver',
    )
  })
})
