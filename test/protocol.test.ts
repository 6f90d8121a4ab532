/**
 * docs/protocol.md, proven: a driver written with nothing but a raw NATS client and what that page
 * says handles a resource change and a pipeline step end to end. Everything on the driver side
 * (subjects, partitions, headers, payloads) is built by hand from the document; the stack and the
 * HTTP API are only used to set the system up and to look at the result.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, headers, type NatsConnection } from '@nats-io/transport-node'
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JsMsg,
} from '@nats-io/jetstream'
import { api, eventually, startStack, type Stack } from './harness.ts'

let stack: Stack
let nc: NatsConnection
let js: JetStreamClient

const json = (value: unknown): string => JSON.stringify(value)
const nanos = (ms: number): number => ms * 1_000_000

beforeAll(async () => {
  stack = await startStack({ worker: true })
  nc = await connect({
    servers: stack.servers.natsUrl,
    user: stack.servers.natsAuth.user,
    pass: stack.servers.natsAuth.password,
  })
  js = jetstream(nc)
})
afterAll(async () => {
  await nc?.close()
  await stack?.close()
})

// ---- The protocol, by hand ------------------------------------------------------------------

/** "32-bit FNV-1a over the characters of the text `type/name`, modulo 64, written `p` and two digits." */
function partitionOf(type: string, name: string): string {
  let h = 0x811c9dc5
  for (const c of `${type}/${name}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0
  return `p${String(h % 64).padStart(2, '0')}`
}

/** Where a resource's actor takes one driver's work requests: `conveyor.work.{pNN}.{type}.{name}.{driver}`. */
const workSubject = (type: string, name: string, driver: string): string =>
  `conveyor.work.${partitionOf(type, name)}.${type}.${name}.${driver}`

/** A raw driver instance: its name and instance id. */
interface RawDriver {
  readonly name: string
  readonly instance: string
}

function rawDriver(name: string): RawDriver {
  return { name, instance: `${name}-${randomUUID().slice(0, 8)}` }
}

/** "put `{name, resources, instance, …}` into `conveyor-driver-instances` under `{driver}.{instance}`", and the driver once into `conveyor-drivers`. */
async function register(driver: RawDriver, resources: string[]): Promise<void> {
  const started = new Date().toISOString()
  await js.publish(
    `$KV.conveyor-driver-instances.${driver.name}.${driver.instance}`,
    json({
      name: driver.name,
      resources,
      instance: driver.instance,
      version: '0.0.1',
      host: 'protocol-test',
      pid: process.pid,
      started,
      concurrency: 1,
    }),
  )
  await js.publish(`$KV.conveyor-drivers.${driver.name}`, json({ name: driver.name, resources, lastSeen: started }))
}

/**
 * One request to a resource's actor: a core NATS request to its work subject; the answer is
 * `{status, body}`. No answer within a few seconds (or no responders): ask again (the request is
 * idempotent by its token).
 */
async function ask(
  driver: RawDriver | { readonly name: string },
  type: string,
  name: string,
  request: Record<string, unknown>,
  attempts = 3,
): Promise<{ status: number; body: any }> {
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const id = randomUUID()
    const reply = await nc
      .request(workSubject(type, name, driver.name), json({ ...request, id }), { timeout: 5000 })
      .catch(() => undefined)
    if (reply === undefined) continue
    const answer = reply.json<{ status: number; body: any }>()
    expect(answer.body.id).toBe(id)
    return answer
  }
  throw new Error(`no answer to ${String(request.type)} on ${workSubject(type, name, driver.name)}`)
}

/** Pulls the next message of a durable consumer, waiting for it rather than sleeping. */
async function next(consumer: string, expiresMs = 15_000): Promise<JsMsg> {
  const c = await js.consumers.get('CONVEYOR_EVENTS', consumer)
  const m = await c.next({ expires: expiresMs })
  if (!m) throw new Error(`no message on ${consumer} within ${expiresMs} ms`)
  return m
}

/** Log lines go to `conveyor.logs.{driver}.{runid}`; the publish resolves once JetStream acked it. */
async function logLine(driver: string, runid: string, line: Record<string, unknown>): Promise<void> {
  await js.publish(
    `conveyor.logs.${driver}.${runid}`,
    json({ stream: 'log', timestamp: new Date().toISOString(), ...line }),
  )
}

/** "A reconcile's log ends with `{success, message, timestamp}` on the same subject with the header `Conveyor-Log-End: 1`." */
async function logEnd(driver: string, runid: string, success: boolean, message: string): Promise<void> {
  const h = headers()
  h.set('Conveyor-Log-End', '1')
  await js.publish(
    `conveyor.logs.${driver}.${runid}`,
    json({ success, message, timestamp: new Date().toISOString() }),
    { headers: h },
  )
}

async function defineType(name: string): Promise<void> {
  expect(
    (await api(stack.url, 'POST', '/resource-definitions', { name, version: '1', schema: { type: 'object' } })).status,
  ).toBe(201)
}

async function resourceWhere(
  type: string,
  name: string,
  until: (resource: any) => boolean,
  what: string,
): Promise<any> {
  return await eventually(
    async () => {
      const got = await api(stack.url, 'GET', `/resources/${type}/${name}`)
      return got.status === 200 && until(got.body) ? got.body : undefined
    },
    what,
    15_000,
  )
}

// ---- The tests ------------------------------------------------------------------------------

describe('docs/protocol.md, with a raw NATS client', () => {
  it('handles a change of a resource without a pipeline: register, consume, claim, renew, log, report', async () => {
    const type = 'proto-res'
    const driver = rawDriver('raw-reconciler')
    await defineType(type)

    // Register, then create the durable consumer before the resource exists (deliver_policy: new).
    await register(driver, [type])
    const jsm = await jetstreamManager(nc)
    await jsm.consumers.add('CONVEYOR_EVENTS', {
      durable_name: `driver_${driver.name}`,
      ack_policy: AckPolicy.Explicit,
      filter_subject: `conveyor.ev.resource.*.${type}.*.*`,
      deliver_policy: DeliverPolicy.New,
      ack_wait: nanos(30_000),
      max_deliver: 6,
    })

    const name = 'widget'
    expect(
      (await api(stack.url, 'POST', '/resources', { name, resource: type, spec: { colour: 'blue' } })).status,
    ).toBe(201)

    // The `created` event, on the subject and with the headers the document names.
    const m = await next(`driver_${driver.name}`)
    expect(m.subject).toBe(`conveyor.ev.resource.${partitionOf(type, name)}.${type}.${name}.created`)
    expect(m.headers?.get('Conveyor-Kind')).toBe('created')
    const event = m.json<any>()
    // "a message id (`Nats-Msg-Id`) derived from `uid` and `revision`"
    expect(m.headers?.get('Nats-Msg-Id')).toContain(event.uid)
    expect(m.headers?.get('Nats-Msg-Id')).toContain(String(event.revision))
    expect(event).toMatchObject({
      kind: 'created',
      type,
      name,
      version: 1,
      object: { name, resource: type, spec: { colour: 'blue' } },
    })
    expect(typeof event.uid).toBe('string')
    expect(typeof event.revision).toBe('number')
    expect(typeof event.runid).toBe('string')
    expect(event.object.pipeline).toBeUndefined()

    // Claim the reconcile work.
    const work = {
      kind: 'reconcile',
      uid: event.uid,
      runid: event.runid,
      driver: driver.name,
      revision: event.revision,
    }
    const token = randomUUID()
    const claim = await ask(driver, type, name, {
      type: 'conveyor.claim',
      work,
      token,
      holder: driver.instance,
      leaseMs: 30_000,
    })
    expect(claim.status).toBe(200)
    expect(claim.body).toMatchObject({ result: 'go', execution: 1 })
    expect(claim.body.expiresAt).toBeDefined()

    // Work: renew (with +WPI on the message), write a log line.
    m.working()
    const renew = await ask(driver, type, name, { type: 'conveyor.renew', work, token, leaseMs: 30_000 })
    expect(renew).toMatchObject({ status: 200, body: { result: 'ok' } })
    expect(renew.body.expiresAt).toBeDefined()
    await logLine(driver.name, event.runid, { message: `painting ${name} ${String(event.object.spec.colour)}` })

    // Report; on the answer publish the log end marker, then ack (confirmed).
    const report = await ask(driver, type, name, {
      type: 'conveyor.report',
      work,
      token,
      success: true,
      retryable: false,
      message: 'painted',
      data: { coats: 2 },
    })
    expect(report).toMatchObject({ status: 200, body: { result: 'recorded' } })
    await logEnd(driver.name, event.runid, true, 'painted')
    expect(await m.ackAck()).toBe(true)

    // The outcome, as the API shows it; the built-in lifecycle went pending → running → succeeded.
    const done = await resourceWhere(type, name, (r) => r.status?.state === 'succeeded', 'the resource to succeed')
    expect(done.status.drivers[driver.name]).toMatchObject({
      success: true,
      message: 'painted',
      data: { coats: 2 },
      runid: event.runid,
      forRevision: event.revision,
      attempt: 1,
    })
    expect(done.status.drivers[driver.name].finishedAt).toBeDefined()
    expect(done.status.state).toBe('succeeded')

    // The registry lists the driver with its instance.
    const drivers = await api(stack.url, 'GET', '/drivers')
    const listed = drivers.body.items.find((d: any) => d.name === driver.name)
    expect(listed).toBeDefined()
    expect(listed.instances.map((i: any) => i.instance)).toContain(driver.instance)

    // The log line is stored.
    const lines = await eventually(async () => {
      const got = await api(stack.url, 'GET', `/logs?driver=${driver.name}&runid=${event.runid}`)
      return got.status === 200 && got.body.length > 0 ? got.body : undefined
    }, 'the log line')
    expect(lines.map((l: any) => l.message)).toContain('painting widget blue')

    // The work finished: another claim (a new token) is told so, with the outcome.
    const again = await ask(driver, type, name, {
      type: 'conveyor.claim',
      work,
      token: randomUUID(),
      holder: driver.instance,
      leaseMs: 30_000,
    })
    expect(again.body).toMatchObject({
      result: 'done',
      outcome: { success: true, message: 'painted', data: { coats: 2 } },
    })

    // A report from someone without the claim is nobody's result.
    const forged = await ask(driver, type, name, {
      type: 'conveyor.report',
      work,
      token: randomUUID(),
      success: false,
      retryable: false,
      message: 'forged',
    })
    expect(forged.body).toMatchObject({ result: 'stale' })
    expect(forged.body.reason).toBeDefined()

    // Another driver's work, asked for on another driver's subject, is refused.
    const impostor = await ask({ name: 'impostor' }, type, name, {
      type: 'conveyor.claim',
      work,
      token,
      holder: 'x',
      leaseMs: 1000,
    })
    expect(impostor.status).toBe(403)
    expect(impostor.body.detail).toMatch(/belongs to driver/)
  })

  it('runs a pipeline step: the commands come with the granted claim, not with the message', async () => {
    const type = 'proto-pipe'
    const driver = rawDriver('raw-stepper')
    await defineType(type)
    await register(driver, [type])

    // deliver_policy: all, so steps dispatched before the consumer existed still come.
    const jsm = await jetstreamManager(nc)
    await jsm.consumers.add('CONVEYOR_EVENTS', {
      durable_name: `driver_${driver.name}_steps`,
      ack_policy: AckPolicy.Explicit,
      filter_subject: `conveyor.ev.step.*.*.*.${driver.name}`,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(30_000),
      max_deliver: 6,
    })

    expect(
      (
        await api(stack.url, 'POST', '/pipelines', {
          name: 'proto-ci',
          resource: type,
          steps: [{ id: 'plan', driver: driver.name, commands: ['echo planned'] }],
        })
      ).status,
    ).toBe(201)
    const name = 'service'
    expect(
      (await api(stack.url, 'POST', '/resources', { name, resource: type, pipeline: 'proto-ci', spec: { repo: 'r1' } }))
        .status,
    ).toBe(201)

    const m = await next(`driver_${driver.name}_steps`)
    expect(m.subject).toBe(`conveyor.ev.step.${partitionOf(type, name)}.${type}.${name}.${driver.name}`)
    expect(m.headers?.get('Conveyor-Kind')).toBe('step.dispatched')
    const event = m.json<any>()
    expect(event).toMatchObject({
      kind: 'step.dispatched',
      type,
      name,
      pipeline: 'proto-ci',
      step: { id: 'plan', driver: driver.name, attempt: 1 },
    })
    // A forged message cannot run anything: the commands are not in it.
    expect(event.step.commands).toBeUndefined()
    expect(JSON.stringify(event)).not.toContain('echo planned')

    // Claim the step; the plan's step comes with `go`. Another driver cannot claim it.
    const work = { kind: 'step', uid: event.uid, runid: event.runid, step: event.step.id, dispatch: event.step.attempt }
    const token = randomUUID()
    const impostor = await ask({ name: 'impostor' }, type, name, {
      type: 'conveyor.claim',
      work,
      token,
      holder: 'x',
      leaseMs: 1000,
    })
    expect(impostor.status).toBe(403)
    const claim = await ask(driver, type, name, {
      type: 'conveyor.claim',
      work,
      token,
      holder: driver.instance,
      leaseMs: 30_000,
    })
    expect(claim.body).toMatchObject({ result: 'go', execution: 1 })
    expect(claim.body.step.commands).toEqual(['echo planned'])
    expect(claim.body.resource).toMatchObject({ name, resource: type, spec: { repo: 'r1' } })
    expect(claim.body.steps).toEqual({}) // no step of the run finished yet

    // A log line with pipeline and step, acked before the report; then report, then ack.
    await logLine(driver.name, event.runid, { message: 'planned', pipeline: 'proto-ci', step: 'plan' })
    const report = await ask(driver, type, name, {
      type: 'conveyor.report',
      work,
      token,
      success: true,
      retryable: false,
      message: 'planned',
      data: { plan: 'ok' },
    })
    expect(report.body).toMatchObject({ result: 'recorded' })
    expect(await m.ackAck()).toBe(true)

    const done = await resourceWhere(
      type,
      name,
      (r) => ['succeeded', 'failed', 'cancelled'].includes(r.status?.pipeline?.status),
      'the run to finish',
    )
    expect(done.status.pipeline.status).toBe('succeeded')
    expect(done.status.steps[0]).toMatchObject({ id: 'plan', status: 'succeeded', data: { plan: 'ok' } })
  })
})
