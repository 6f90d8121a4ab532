import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { jetstream } from '@nats-io/jetstream'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { startGateway, type Gateway } from '../gateway/server.ts'
import { createLogger } from '../runtime/logger.ts'
import { TokenStore } from '../runtime/token-store.ts'
import { followDriverIdentities } from '../runtime/servers/local-cluster.ts'
import type { NatsUserSync } from '../runtime/servers/nats-user-sync.ts'
import { partitionOf, partitionName, subjects } from '../runtime/keys.ts'
import { defineDriver } from '../actors/driver/define.ts'
import { runDriver } from '../actors/driver/run.ts'

let stack: Stack
let gateway: Gateway
let sync: NatsUserSync
let dir: string
let admin: string
let url: string
const opened: NatsConnection[] = []

const as = (token: string) => ({ authorization: `Bearer ${token}` })
const call = (token: string, method: string, path: string, body?: unknown) => api(url, method, path, body, as(token))

async function driverToken(driver: string, types?: string[]): Promise<string> {
  const made = await call(admin, 'POST', '/tokens', { role: 'driver', driver, ...(types ? { types } : {}) })
  expect(made.status).toBe(201)
  return made.body.token as string
}

/** Signs in to NATS as a driver identity would, with what the gateway issued. */
async function signIn(identity: { user: string; password: string; inboxPrefix: string }): Promise<NatsConnection> {
  const nc = await connect({
    servers: stack.servers.natsUrl,
    user: identity.user,
    pass: identity.password,
    inboxPrefix: identity.inboxPrefix,
    maxReconnectAttempts: 0,
  })
  opened.push(nc)
  return nc
}

/** The permission errors the server sent a connection, as nats.js reports them. */
function permissionErrors(nc: NatsConnection): string[] {
  const seen: string[] = []
  void (async () => {
    for await (const status of nc.status())
      if (status.type === 'error' && /permission/i.test(String(status.error))) seen.push(String(status.error))
  })()
  return seen
}

beforeAll(async () => {
  stack = await startStack({ worker: true })
  sync = await followDriverIdentities(stack.servers, stack.connections.etcd, createLogger('nats users', 'error'))
  dir = await mkdtemp(join(tmpdir(), 'conveyor-identity-'))
  gateway = await startGateway({
    connections: stack.connections,
    port: 0,
    dataDir: dir,
    logger: createLogger('gateway', 'error'),
  })
  url = gateway.url
  admin = (await new TokenStore(stack.connections.etcd).create({ role: 'admin' })).token
  for (const name of ['paint', 'vault'])
    expect((await call(admin, 'POST', '/resource-definitions', { name, schema: { type: 'object' } })).status).toBe(201)
})
afterAll(async () => {
  for (const nc of opened) await nc.close().catch(() => {})
  await sync?.close()
  await gateway?.close()
  await stack?.close()
  await rm(dir, { recursive: true, force: true })
})

describe('driver identities', () => {
  it('a driver signs in with the identity its driver token gets, and runs changes and pipeline steps with it alone', async () => {
    const token = await driverToken('painter', ['paint'])
    const seen: string[] = []
    const painter = await runDriver(
      defineDriver({
        name: 'painter',
        resources: ['paint'],
        reconcile(ctx) {
          seen.push(`${ctx.step ? `step ${ctx.step.id}` : 'change'} ${ctx.resource.name}`)
          ctx.log(`painting ${ctx.resource.name}`)
          return { success: true, message: 'painted' }
        },
      }),
      {
        natsUrl: stack.servers.natsUrl,
        identity: { apiUrl: url, token },
        workspaceRoot: join(dir, 'workspaces'),
        logger: createLogger('painter', 'error'),
      },
    )
    stack.drivers.push(painter)
    expect((await call(admin, 'POST', '/resources', { name: 'wall', resource: 'paint', spec: {} })).status).toBe(201)
    const wall = await eventually(async () => {
      const got = await call(admin, 'GET', '/resources/paint/wall')
      return got.body.status?.drivers?.painter ? got.body : undefined
    }, 'the painter to report on paint/wall')
    expect(wall.status.drivers.painter).toMatchObject({ success: true, message: 'painted' })
    const pipeline = await call(admin, 'POST', '/pipelines', {
      name: 'coat',
      resource: 'paint',
      steps: [{ id: 'prime', driver: 'painter' }],
    })
    expect(pipeline.status).toBe(201)
    expect(
      (await call(admin, 'POST', '/resources', { name: 'door', resource: 'paint', pipeline: 'coat', spec: {} })).status,
    ).toBe(201)
    await eventually(async () => {
      const got = await call(admin, 'GET', '/resources/paint/door')
      return got.body.status?.pipeline?.status === 'succeeded' ? true : undefined
    }, 'the pipeline run with the painter identity to succeed')
    expect(seen).toEqual(['change wall', 'step prime door'])
    // Its log lines arrived on its own subjects.
    const run = (await call(admin, 'GET', '/resources/paint/door')).body.status.runid
    const lines = await eventually(async () => {
      const got = await call(admin, 'GET', `/logs?runid=${run}`)
      return got.body.length > 0 ? got.body : undefined
    }, 'the step log line')
    expect(lines.map((l: { message: string }) => l.message)).toContain('painting door')
    // A replay reaches it on one of its replay consumers; closing removes its registry entry.
    const replay = await call(admin, 'POST', '/replay', {
      driver: 'painter',
      type: 'paint',
      resource: 'wall',
      force: true,
    })
    expect(replay.status).toBe(201)
    await eventually(async () => {
      const got = await call(admin, 'GET', `/replay/${replay.body.id}`)
      return got.body.status === 'done' ? true : undefined
    }, 'the replay to the painter identity to be done')
    expect(seen).toContain('change wall')
    await painter.close()
    // Nothing the driver did was refused: its permissions cover what it needs.
    expect(stack.servers.nats.child.output).not.toMatch(/Violation.*driver-painter/)
  })

  it('refuses what is not its own: another driver`s reports, other types` events, its own consumers, the events stream', async () => {
    const token = await driverToken('scribe', ['paint'])
    const issued = await call(token, 'POST', '/drivers/scribe/identity', { resources: ['paint'] })
    expect(issued.status).toBe(200)
    expect(issued.body).toMatchObject({ user: expect.any(String), inboxPrefix: '_INBOX.driver.scribe' })
    expect(issued.body.consumers).toEqual(['driver_scribe_steps', 'driver_scribe'])
    const nc = await signIn(issued.body)
    const errors = permissionErrors(nc)
    const js = jetstream(nc)
    const work = `conveyor.work.${partitionName(partitionOf('paint', 'wall'))}.paint.wall`
    const refused = async (attempt: Promise<unknown>): Promise<string> => {
      const error = await attempt.then(
        () => undefined,
        (failure: unknown) => String(failure),
      )
      expect(error, 'the server to refuse it').toBeDefined()
      return error!
    }

    // Its own work request reaches the actor …
    const own = await nc.request(
      `${work}.scribe`,
      JSON.stringify({
        type: 'conveyor.renew',
        id: randomUUID(),
        work: { kind: 'reconcile', uid: 'x', runid: 'y', driver: 'scribe', revision: 1 },
        token: 't',
        leaseMs: 0,
      }),
      { timeout: 5000 },
    )
    expect(own.json<{ status: number }>().status).toBe(200)
    // … another driver's reports do not (the subject names the driver) …
    expect(
      await refused(
        nc.request(
          `${work}.painter`,
          JSON.stringify({ type: 'conveyor.report', id: randomUUID(), work: {}, token: 't', success: true }),
          { timeout: 5000 },
        ),
      ),
    ).toMatch(/permission/i)
    // … and naming another driver's work on its own subject is a 403 from the actor.
    const impostor = await nc.request(
      `${work}.scribe`,
      JSON.stringify({
        type: 'conveyor.report',
        id: randomUUID(),
        work: { kind: 'reconcile', uid: 'x', runid: 'y', driver: 'painter', revision: 1 },
        token: 't',
        success: true,
        retryable: false,
        message: '',
        data: {},
      }),
      { timeout: 5000 },
    )
    expect(impostor.json<{ status: number }>().status).toBe(403)

    // Other types' events: no subscription, no catch-up, no consumer of its own making, no other driver's consumer.
    const sub = nc.subscribe(subjects.resourceChangesOfType('vault'))
    const ended = await refused(
      (async () => {
        for await (const _ of sub) return
      })(),
    )
    expect(ended).toMatch(/permission/i)
    expect(await refused(nc.request(`conveyor.sync.p00.vault.scribe`, JSON.stringify({}), { timeout: 5000 }))).toMatch(
      /permission/i,
    )
    const jsm = await import('@nats-io/jetstream').then((m) => m.jetstreamManager(nc))
    expect(
      await refused(
        jsm.consumers.add('CONVEYOR_EVENTS', { durable_name: 'driver_scribe_all', filter_subject: 'conveyor.ev.>' }),
      ),
    ).toMatch(/permission|timeout/i)
    expect(
      await refused(js.consumers.get('CONVEYOR_EVENTS', 'driver_painter').then((c) => c.next({ expires: 2000 }))),
    ).toMatch(/permission|timeout|not found/i)

    // The events stream and the actors' inbox are written by the control plane only.
    expect(
      await refused(
        js.publish(subjects.resource('paint', 'forged', 'created'), JSON.stringify({ kind: 'created' }), {
          timeout: 3000,
        }),
      ),
    ).toMatch(/permission|timeout/i)
    expect(
      await refused(
        js.publish(subjects.inbox('paint', 'wall'), JSON.stringify({ type: 'START', id: 'x' }), { timeout: 3000 }),
      ),
    ).toMatch(/permission|timeout/i)
    await eventually(() => (errors.length >= 4 ? true : undefined), 'the server to report the refusals', 5000)
  })

  it('a token for another driver, or a type outside the token, gets no identity; a revoked token`s identity is gone', async () => {
    const token = await driverToken('limner', ['paint'])
    const other = await call(token, 'POST', '/drivers/painter/identity', { resources: ['paint'] })
    expect(other.status).toBe(403)
    expect(other.body.detail).toMatch(/this token is for driver limner/)
    const outside = await call(token, 'POST', '/drivers/limner/identity', { resources: ['vault'] })
    expect(outside.status).toBe(403)
    expect(outside.body.detail).toMatch(/may serve types paint only, not vault/)
    const issued = await call(token, 'POST', '/drivers/limner/identity', { resources: [] })
    expect(issued.status).toBe(200)
    const again = await call(token, 'POST', '/drivers/limner/identity', { resources: [] })
    expect(again.body.password).toBe(issued.body.password)
    const nc = await signIn(issued.body)
    const closed = nc.closed()
    const id = /^cvt_([0-9a-f]{16})_/.exec(token)![1]!
    expect((await call(admin, 'DELETE', `/tokens/${id}`)).status).toBe(200)
    // The servers drop the user: its connection is closed, and it cannot sign in again.
    await eventually(() => (nc.isClosed() ? true : undefined), 'the revoked identity to be disconnected', 15_000)
    await closed
    await expect(signIn(issued.body)).rejects.toThrow(/authorization/i)
  })
})
