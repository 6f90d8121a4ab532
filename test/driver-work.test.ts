import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Subscription } from '@nats-io/transport-node'
import { defineDriver, runDriver, type ConveyorEvent, type DriverContext, type RunningDriver } from 'conveyor'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { ConveyorProcess } from './processes.ts'
import { createLogger } from '../runtime/logger.ts'
import { partitionName, partitionOf, streams } from '../runtime/keys.ts'
import { faultHooks } from '../runtime/faults.ts'
import { shellDriver } from '../actors/driver/builtin/shell.ts'

let stack: Stack
let dir: string
const quiet = createLogger('driver', 'error')
const RECORDER = fileURLToPath(new URL('./fixtures/recording-driver.ts', import.meta.url))
const LEASER = fileURLToPath(new URL('./fixtures/lease-driver.ts', import.meta.url))

beforeAll(async () => {
  stack = await startStack({ worker: true })
  dir = await mkdtemp(join(tmpdir(), 'conveyor-work-'))
  for (const name of ['job', 'crop', 'box', 'svc', 'step-host'])
    expect(
      (await api(stack.url, 'POST', '/resource-definitions', { name, version: '1', schema: { type: 'object' } }))
        .status,
    ).toBe(201)
})
afterAll(async () => {
  await stack?.close()
  await rm(dir, { recursive: true, force: true })
})

async function serve(
  name: string,
  resources: string[],
  reconcile: (ctx: DriverContext) => unknown,
  options: { events?: ('created' | 'updated' | 'deleted')[]; ackWaitMs?: number; concurrency?: number } = {},
): Promise<RunningDriver> {
  const definition = defineDriver({
    name,
    resources,
    reconcile: reconcile as never,
    ...(options.events ? { events: options.events } : {}),
    ...(options.concurrency ? { concurrency: options.concurrency } : {}),
  })
  const running = await runDriver(definition, {
    connections: stack.connections,
    logger: quiet,
    ...(options.ackWaitMs ? { ackWaitMs: options.ackWaitMs } : {}),
  })
  stack.drivers.push(running)
  return running
}

const get = async (path: string): Promise<any> => (await api(stack.url, 'GET', path)).body

/** Events published on a subject from now on (core NATS sees every JetStream publish). */
function capture(subject: string): { events: ConveyorEvent[]; stop(): void } {
  const events: ConveyorEvent[] = []
  const subscription: Subscription = stack.connections.nats.subscribe(subject, {
    callback: (error, message) => void (error ? undefined : events.push(message.json<ConveyorEvent>())),
  })
  return { events, stop: () => subscription.unsubscribe() }
}

/** Publishes a copy of an event under a new message id: what an outbox republish after the duplicate window delivers. */
async function republish(subject: string, event: ConveyorEvent): Promise<void> {
  await stack.connections.js.publish(subject, JSON.stringify(event), { msgID: `copy-${Math.random()}` })
}

/** Waits until a driver's consumer has handled everything delivered to it. */
async function drained(consumer: string): Promise<void> {
  await eventually(
    async () => {
      const info = await stack.connections.jsm.consumers.info(streams.events, consumer)
      return info.num_pending === 0 && info.num_ack_pending === 0 ? true : undefined
    },
    `consumer ${consumer} to be drained`,
    20_000,
  )
}

describe('drivers speak only NATS', () => {
  it('a driver process runs with etcd pointing at nothing, and catches up on what was created and updated while it started', async () => {
    const record = join(dir, 'nats-only.txt')
    await writeFile(record, '')
    const driver = new ConveyorProcess(['driver', RECORDER], {
      ...stack.env,
      CONVEYOR_ETCD_ENDPOINTS: 'http://127.0.0.1:9',
      RECORD_FILE: record,
    })
    try {
      // As a new user would: create and update while the driver is still starting.
      const created = await api(stack.url, 'POST', '/resources', { name: 'early', resource: 'job', spec: { v: 1 } })
      expect(created.status).toBe(201)
      const updated = await api(stack.url, 'PUT', '/resources/job/early', { ...created.body, spec: { v: 2 } })
      expect(updated.status).toBe(200)
      await driver.waitFor(/driver recorder running/)
      const done = await eventually(
        async () => {
          const resource = await get('/resources/job/early')
          return resource.status.drivers.recorder?.forRevision === updated.body.metadata.revision ? resource : undefined
        },
        'the latest version to be reconciled',
        20_000,
      )
      expect(done.status.state).toBe('succeeded')
      const lines = (await readFile(record, 'utf8')).split('\n').filter((l) => l.includes(' early '))
      expect(lines.filter((l) => l.endsWith(` ${updated.body.metadata.revision}`))).toHaveLength(1)
    } finally {
      driver.kill('SIGTERM')
      await driver.exited
    }
  })

  it('catch-up reconciles each current version exactly once, and nothing deleted meanwhile; a restart catches up on what changed while down', async () => {
    const c1 = await api(stack.url, 'POST', '/resources', { name: 'c1', resource: 'crop', spec: {} })
    const c2 = await api(stack.url, 'POST', '/resources', { name: 'c2', resource: 'crop', spec: { v: 1 } })
    const c2b = await api(stack.url, 'PUT', '/resources/crop/c2', { ...c2.body, spec: { v: 2 } })
    await api(stack.url, 'POST', '/resources', { name: 'c3', resource: 'crop', spec: {} })
    expect((await api(stack.url, 'DELETE', '/resources/crop/c3')).status).toBe(200)
    const seen: string[] = []
    const reconcile = (ctx: DriverContext): void =>
      void seen.push(`${ctx.event.kind} ${ctx.resource.name}@${ctx.event.revision}`)
    const first = await serve('harvester', ['crop'], reconcile)
    expect(await first.caughtUp).toBe(2)
    expect(seen.sort()).toEqual([`created c1@${c1.body.metadata.revision}`, `updated c2@${c2b.body.metadata.revision}`])
    expect((await get('/resources/crop/c2')).status.drivers.harvester).toMatchObject({
      success: true,
      forRevision: c2b.body.metadata.revision,
      attempt: 1,
    })

    await first.close()
    const c1b = await api(stack.url, 'PUT', '/resources/crop/c1', {
      ...(await get('/resources/crop/c1')),
      spec: { v: 2 },
    })
    const second = await serve('harvester', ['crop'], reconcile)
    await second.caughtUp
    await eventually(
      () => (seen.includes(`updated c1@${c1b.body.metadata.revision}`) ? true : undefined),
      'the change made while down',
    )
    await drained('driver_harvester')
    expect(seen.filter((s) => s.includes('c1@'))).toHaveLength(2)
    expect(seen.filter((s) => s.includes('c2@'))).toHaveLength(1)
  })

  it('a deletion is handled once: a redelivered deleted event does not repeat the teardown', async () => {
    const teardowns: string[] = []
    await serve('janitor', ['box'], (ctx) => void teardowns.push(ctx.resource.name), { events: ['deleted'] })
    const deletes = capture('conveyor.ev.resource.*.box.*.deleted')
    try {
      await api(stack.url, 'POST', '/resources', { name: 'b1', resource: 'box', spec: {} })
      await api(stack.url, 'DELETE', '/resources/box/b1')
      await eventually(() => (teardowns.length === 1 && deletes.events.length === 1 ? true : undefined), 'the teardown')
      await republish(`conveyor.ev.resource.${partitionToken('box', 'b1')}.box.b1.deleted`, deletes.events[0]!)
      await drained('driver_janitor')
      expect(teardowns).toEqual(['b1'])
    } finally {
      deletes.stop()
    }
  })

  it('the built-in lifecycle follows the drivers: running once claimed, failed when one of the drivers serving the type failed', async () => {
    await serve('svc-ok', ['svc'], () => ({ success: true, message: 'fine' }))
    await serve('svc-bad', ['svc'], async () => {
      await new Promise((resolve) => setTimeout(resolve, 200))
      return { success: false, message: 'broken' }
    })
    // Both registrations must have reached the registry before the resource exists: otherwise
    // svc-ok alone could settle it before svc-bad is known to serve the type.
    await eventually(async () => {
      const { items } = await get('/drivers')
      const live = (name: string): boolean => items.some((d: any) => d.name === name && d.instances.length > 0)
      return live('svc-ok') && live('svc-bad') ? true : undefined
    }, 'both drivers to be registered')
    const transitions = capture('conveyor.ev.outcome.*.svc.s1.transitioned')
    try {
      await api(stack.url, 'POST', '/resources', { name: 's1', resource: 'svc', spec: {} })
      const done = await eventually(async () => {
        const resource = await get('/resources/svc/s1')
        return resource.status.done ? resource : undefined
      }, 'the resource to settle')
      expect(done.status.state).toBe('failed')
      expect(done.status.drivers['svc-ok']).toMatchObject({ success: true })
      expect(done.status.drivers['svc-bad']).toMatchObject({ success: false, message: 'broken' })
      expect(transitions.events.map((e) => `${e.from}→${e.to}`)).toEqual(['pending→running', 'running→failed'])
      expect(transitions.events[1]!.event).toMatchObject({ type: 'FAIL', message: 'driver svc-bad failed: broken' })
    } finally {
      transitions.stop()
    }
  })

  it("a definition's own lifecycle reacts to driver outcomes (conveyor.driver.result)", async () => {
    const lifecycle = {
      initial: 'waiting',
      context: { checkedBy: null },
      states: {
        waiting: {
          on: {
            'conveyor.driver.result': {
              target: 'checked',
              actions: [{ type: 'assign', params: { checkedBy: { $event: 'driver' } } }],
            },
          },
        },
        checked: { type: 'final' },
      },
    }
    expect(
      (
        await api(stack.url, 'POST', '/resource-definitions', {
          name: 'gate',
          version: '1',
          schema: { type: 'object' },
          lifecycle,
        })
      ).status,
    ).toBe(201)
    await serve('gatekeeper', ['gate'], () => ({ success: true }))
    await api(stack.url, 'POST', '/resources', { name: 'g1', resource: 'gate', spec: {} })
    const done = await eventually(async () => {
      const resource = await get('/resources/gate/g1')
      return resource.status.state === 'checked' ? resource : undefined
    }, 'the lifecycle to react')
    expect(done.status.context).toEqual({ checkedBy: 'gatekeeper' })
  })
})

describe('the registry', () => {
  it('lists drivers with their live instances; warns of a pipeline naming a driver never seen, whose steps say they wait', async () => {
    const running = await serve('listed', ['job'], () => ({ success: true }))
    const listed = await eventually(
      async () => (await get('/drivers')).items.find((d: any) => d.name === 'listed' && d.instances.length === 1),
      'the instance to be listed',
    )
    expect(listed.instances[0]).toMatchObject({
      name: 'listed',
      resources: ['job'],
      instance: running.instance,
      version: expect.any(String),
      host: expect.any(String),
      started: expect.any(String),
    })

    const saved = await api(stack.url, 'POST', '/pipelines', {
      name: 'typo',
      resource: 'job',
      steps: [{ id: 'one', driver: 'shel' }],
    })
    expect(saved.status).toBe(201)
    expect(saved.body.warnings).toEqual([
      'driver "shel" has never been seen: its steps will wait until an instance of it runs',
    ])
    expect(saved.headers.get('warning')).toMatch(/^299 conveyor "driver \\"shel\\" has never been seen/)
    await api(stack.url, 'POST', '/resources', { name: 'typo-run', resource: 'job', pipeline: 'typo', spec: {} })
    expect((await get('/resources/job/typo-run')).status.steps[0]).toMatchObject({
      status: 'running',
      message: 'waiting: no instance of driver "shel" is running',
    })

    await running.close()
    await eventually(
      async () =>
        (await get('/drivers')).items.find((d: any) => d.name === 'listed')?.instances.length === 0 ? true : undefined,
      'the instance to go on close',
    )
  })
})

describe('exactly-once effect of pipeline steps', () => {
  it("a step's returned data reaches later steps in ctx.steps, and the steps of a run share ctx.workspace", async () => {
    const seen: { step: string; steps: unknown; workspace: string | undefined }[] = []
    await serve('relay', [], (ctx) => {
      seen.push({ step: ctx.step!.id, steps: ctx.steps, workspace: ctx.workspace })
      return { success: true, data: { from: ctx.step!.id } }
    })
    await api(stack.url, 'POST', '/pipelines', {
      name: 'relayed',
      resource: 'step-host',
      steps: [
        { id: 'first', driver: 'relay' },
        { id: 'second', driver: 'relay' },
      ],
    })
    const created = await api(stack.url, 'POST', '/resources', {
      name: 'relay-1',
      resource: 'step-host',
      pipeline: 'relayed',
      spec: {},
    })
    await eventually(
      async () =>
        (await get('/resources/step-host/relay-1')).status.pipeline.status === 'succeeded' ? true : undefined,
      'the run to succeed',
    )
    expect(seen.map((s) => [s.step, s.steps])).toEqual([
      ['first', {}],
      ['second', { first: { from: 'first' } }],
    ])
    expect(seen[0]!.workspace).toMatch(new RegExp(`${created.body.runid}$`))
    expect(seen[1]!.workspace).toBe(seen[0]!.workspace)
  })

  it('the shell driver runs the plan stored in the actor, not commands a message carries', async () => {
    const marker = join(dir, 'forged')
    await api(stack.url, 'POST', '/pipelines', {
      name: 'planned',
      resource: 'step-host',
      steps: [{ id: 'only', driver: 'shell', commands: ['echo planned'] }],
    })
    const dispatches = capture('conveyor.ev.step.*.step-host.forge.shell')
    try {
      // No shell driver runs yet: the dispatch waits in the stream, and a forged copy joins it.
      await api(stack.url, 'POST', '/resources', {
        name: 'forge',
        resource: 'step-host',
        pipeline: 'planned',
        spec: {},
      })
      const [dispatch] = await eventually(
        () => (dispatches.events.length === 1 ? dispatches.events : undefined),
        'the dispatch',
      )
      expect(dispatch!.step).not.toHaveProperty('commands')
      const forged = { ...dispatch!, step: { ...dispatch!.step!, commands: [`touch ${marker}`] } }
      await stack.connections.js.publish(
        `conveyor.ev.step.${partitionToken('step-host', 'forge')}.step-host.forge.shell`,
        JSON.stringify(forged),
        { msgID: 'forged' },
      )
      // A short lease: the copy that finds the step claimed is handed back until the claim's end.
      stack.drivers.push(
        await runDriver(shellDriver, {
          connections: stack.connections,
          logger: quiet,
          workspaceRoot: join(dir, 'workspaces'),
          ackWaitMs: 2000,
        }),
      )
      const done = await eventually(async () => {
        const resource = await get('/resources/step-host/forge')
        return resource.status.pipeline.status === 'running' ? undefined : resource
      }, 'the run to end')
      expect(done.status.pipeline.status).toBe('succeeded')
      await drained('driver_shell_steps')
      const log = await get(`/logs?runid=${done.runid}&driver=shell`)
      expect(log.map((l: any) => l.message)).toContain('planned')
      await expect(stat(marker)).rejects.toThrow()
    } finally {
      dispatches.stop()
    }
  })

  it('a dispatch delivered again while its step runs does not start a second execution', async () => {
    const executions: number[] = []
    await serve(
      'slowpoke',
      [],
      async (ctx) => {
        executions.push(ctx.attempt)
        await new Promise((resolve) => setTimeout(resolve, 1500))
        return { success: true }
      },
      { concurrency: 2, ackWaitMs: 2000 },
    )
    await api(stack.url, 'POST', '/pipelines', {
      name: 'slow',
      resource: 'step-host',
      steps: [{ id: 'wait', driver: 'slowpoke' }],
    })
    const dispatches = capture('conveyor.ev.step.*.step-host.twice.slowpoke')
    try {
      await api(stack.url, 'POST', '/resources', { name: 'twice', resource: 'step-host', pipeline: 'slow', spec: {} })
      await eventually(() => (executions.length === 1 ? true : undefined), 'the first execution')
      await republish(
        `conveyor.ev.step.${partitionToken('step-host', 'twice')}.step-host.twice.slowpoke`,
        dispatches.events[0]!,
      )
      const done = await eventually(async () => {
        const resource = await get('/resources/step-host/twice')
        return resource.status.pipeline.status === 'succeeded' ? resource : undefined
      }, 'the run to succeed')
      await drained('driver_slowpoke_steps')
      expect(executions).toEqual([1])
      expect(done.status.steps[0]).toMatchObject({ status: 'succeeded', executions: 1 })
    } finally {
      dispatches.stop()
    }
  })

  it('an ambiguous commit of a report (durable, but the worker saw an error) still ends the run, running nothing twice', async () => {
    const executions: number[] = []
    await serve('ambiguous', [], (ctx) => void executions.push(ctx.attempt))
    await api(stack.url, 'POST', '/pipelines', {
      name: 'amb',
      resource: 'step-host',
      steps: [
        { id: 'a', driver: 'ambiguous' },
        { id: 'b', driver: 'ambiguous' },
      ],
    })
    let injected = 0
    faultHooks.afterActorCommit = (subjects) => {
      if (injected === 0 && subjects.some((s) => s.endsWith('.step-result'))) {
        injected++
        const error = new Error('4 DEADLINE_EXCEEDED: Deadline exceeded')
        error.name = 'GRPCDeadlineExceededError'
        throw error
      }
    }
    try {
      await api(stack.url, 'POST', '/resources', { name: 'amb-1', resource: 'step-host', pipeline: 'amb', spec: {} })
      const done = await eventually(
        async () => {
          const resource = await get('/resources/step-host/amb-1')
          return resource.status.pipeline.status === 'running' ? undefined : resource
        },
        'the run to end',
        30_000,
      )
      expect(injected).toBe(1)
      expect(done.status.pipeline.status).toBe('succeeded')
      expect(executions).toEqual([1, 1])
    } finally {
      faultHooks.afterActorCommit = undefined
    }
  })

  it(
    'a holder paused past its lease loses the step to another instance and, resumed, is told to abort',
    { timeout: 60_000 },
    async () => {
      const record = join(dir, 'lease.txt')
      await writeFile(record, '')
      const env = { ...stack.env, RECORD_FILE: record, CONVEYOR_DRIVER_ACK_WAIT_MS: '1500', HOLD_MS: '4000' }
      await api(stack.url, 'POST', '/pipelines', {
        name: 'leased',
        resource: 'step-host',
        steps: [{ id: 'hold', driver: 'leaser', retries: 0 }],
      })
      const a = new ConveyorProcess(['driver', LEASER], { ...env, DRIVER_INSTANCE: 'a' })
      let b: ConveyorProcess | undefined
      const lines = async (): Promise<string[]> => (await readFile(record, 'utf8')).split('\n').filter(Boolean)
      try {
        await a.waitFor(/driver leaser running/)
        await api(stack.url, 'POST', '/resources', {
          name: 'held',
          resource: 'step-host',
          pipeline: 'leased',
          spec: {},
        })
        await eventually(async () => ((await lines()).includes('a start 1') ? true : undefined), 'a to start')
        a.child.kill('SIGSTOP')
        b = new ConveyorProcess(['driver', LEASER], { ...env, DRIVER_INSTANCE: 'b' })
        await b.waitFor(/driver leaser running/)
        await eventually(
          async () => ((await lines()).includes('b start 2') ? true : undefined),
          'b to take the step over',
          20_000,
        )
        a.child.kill('SIGCONT')
        await eventually(
          async () => ((await lines()).includes('a aborted 1') ? true : undefined),
          'a to be told to abort',
          20_000,
        )
        const done = await eventually(
          async () => {
            const resource = await get('/resources/step-host/held')
            return resource.status.pipeline.status === 'running' ? undefined : resource
          },
          'the run to end',
          20_000,
        )
        expect(done.status.pipeline.status).toBe('succeeded')
        expect(done.status.steps[0]).toMatchObject({ status: 'succeeded', executions: 2, data: { instance: 'b' } })
        expect(await lines()).not.toContain('a done 1')
      } finally {
        a.child.kill('SIGCONT')
        a.kill('SIGTERM')
        b?.kill('SIGTERM')
        await Promise.all([a.exited, b?.exited])
      }
    },
  )
})

function partitionToken(type: string, name: string): string {
  return partitionName(partitionOf(type, name))
}
