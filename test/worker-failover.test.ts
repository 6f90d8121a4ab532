import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defineDriver, runDriver } from 'conveyor'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { ConveyorProcess } from './processes.ts'
import { createLogger } from '../runtime/logger.ts'

let stack: Stack

beforeAll(async () => {
  stack = await startStack()
  expect(
    (await api(stack.url, 'POST', '/resource-definitions', { name: 'job', version: '1', schema: { type: 'object' } }))
      .status,
  ).toBe(201)
})
afterAll(async () => {
  await stack?.close()
})

const worker = async (): Promise<ConveyorProcess> => {
  const process = new ConveyorProcess(['worker'], { ...stack.env, CONVEYOR_WORKER_LEASE_TTL: '1' })
  await process.waitFor(/worker \S+ running/)
  return process
}

describe('a claim outlives the worker that granted it', () => {
  it('kill -9 of the worker while a step runs: the new owner keeps the claim, the step runs once and its report is recorded', async () => {
    const executions: number[] = []
    let started!: () => void
    const running = new Promise<void>((resolve) => (started = resolve))
    stack.drivers.push(
      await runDriver(
        defineDriver({
          name: 'steady',
          resources: [],
          async reconcile(ctx) {
            executions.push(ctx.attempt)
            started()
            await new Promise((resolve) => setTimeout(resolve, 4000))
            return { success: true, data: { done: true } }
          },
        }),
        { connections: stack.connections, logger: createLogger('driver', 'error'), ackWaitMs: 2000 },
      ),
    )
    await api(stack.url, 'POST', '/pipelines', {
      name: 'one',
      resource: 'job',
      steps: [{ id: 'long', driver: 'steady', retries: 0 }],
    })
    const first = await worker()
    let second: ConveyorProcess | undefined
    try {
      await api(stack.url, 'POST', '/resources', { name: 'survivor', resource: 'job', pipeline: 'one', spec: {} })
      await running
      first.kill('SIGKILL')
      await first.exited
      second = await worker()
      const done = await eventually(
        async () => {
          const resource = (await api(stack.url, 'GET', '/resources/job/survivor')).body
          return resource.status.pipeline.status === 'running' ? undefined : resource
        },
        'the run to end',
        30_000,
      )
      expect(done.status.pipeline.status).toBe('succeeded')
      expect(done.status.steps[0]).toMatchObject({ status: 'succeeded', executions: 1, data: { done: true } })
      expect(executions).toEqual([1])
    } finally {
      first.kill('SIGKILL')
      second?.kill('SIGTERM')
      await Promise.all([first.exited, second?.exited])
    }
  })
})
