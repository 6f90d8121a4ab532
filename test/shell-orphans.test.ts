import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { ConveyorProcess } from './processes.ts'

let stack: Stack
let dir: string

beforeAll(async () => {
  stack = await startStack({ worker: true })
  dir = await mkdtemp(join(tmpdir(), 'conveyor-orphans-'))
  expect(
    (await api(stack.url, 'POST', '/resource-definitions', { name: 'build', version: '1', schema: { type: 'object' } }))
      .status,
  ).toBe(201)
})
afterAll(async () => {
  await stack?.close()
  await rm(dir, { recursive: true, force: true })
})

const shellDriver = async (): Promise<ConveyorProcess> => {
  const driver = new ConveyorProcess(['driver', 'shell'], {
    ...stack.env,
    CONVEYOR_DATA_DIR: dir,
    CONVEYOR_DRIVER_ACK_WAIT_MS: '2000',
  })
  await driver.waitFor(/Conveyor driver shell running/)
  return driver
}

/** Whether `pid` runs (a zombie waiting for its parent to reap it does not). */
const runs = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2))
  } catch {
    return false
  }
}

const readNumber = async (file: string): Promise<number | undefined> => {
  const text = await readFile(file, 'utf8').catch(() => '')
  return /^\d+\s*$/.test(text) ? Number(text) : undefined
}

describe('the shell driver after kill -9', () => {
  it('kills the process group the dead instance left running and removes its workspace before running the step again', async () => {
    const stop = join(dir, 'stop')
    // Each attempt records its shell's pid and a background child's, leaves a mark in the workspace,
    // then beats a heartbeat file until the test says stop.
    const script = [
      `echo $$ > ${dir}/shell-$CONVEYOR_ATTEMPT`,
      `sleep 600 & echo $! > ${dir}/child-$CONVEYOR_ATTEMPT`,
      `touch "left-by-attempt-$CONVEYOR_ATTEMPT"; ls -A > ${dir}/workspace-$CONVEYOR_ATTEMPT`,
      `while [ ! -e ${stop} ]; do date +%s%N > ${dir}/heartbeat-$CONVEYOR_ATTEMPT; sleep 0.1; done`,
    ].join('; ')
    expect(
      (
        await api(stack.url, 'POST', '/pipelines', {
          name: 'long-build',
          resource: 'build',
          steps: [{ id: 'build', driver: 'shell', retries: 0, commands: [script] }],
        })
      ).status,
    ).toBe(201)
    let first: ConveyorProcess | undefined = await shellDriver()
    let second: ConveyorProcess | undefined
    const leftovers: number[] = []
    try {
      expect(
        (
          await api(stack.url, 'POST', '/resources', {
            name: 'b1',
            resource: 'build',
            pipeline: 'long-build',
            spec: {},
          })
        ).status,
      ).toBe(201)
      const shell = await eventually(() => readNumber(join(dir, 'shell-1')), 'the first attempt to start', 30_000)
      const child = await eventually(() => readNumber(join(dir, 'child-1')), 'the background child to start')
      leftovers.push(shell, child)
      const runid = (await api(stack.url, 'GET', '/resources/build/b1')).body.runid as string
      await stat(join(dir, 'workspaces', runid, 'left-by-attempt-1'))

      first.kill('SIGKILL')
      await first.exited
      first = undefined
      // With the driver gone the build goes on (its group is detached): that is the orphan.
      const beat = await readFile(join(dir, 'heartbeat-1'), 'utf8')
      await eventually(
        async () => ((await readFile(join(dir, 'heartbeat-1'), 'utf8')) !== beat ? true : undefined),
        'the orphan to keep beating',
      )

      second = await shellDriver()
      // Started again, the driver kills what its dead predecessor left running.
      expect(runs(shell)).toBe(false)
      expect(runs(child)).toBe(false)
      const last = await readFile(join(dir, 'heartbeat-1'), 'utf8')
      // The step runs again, in a fresh workspace (the dead instance's one was removed).
      await eventually(() => readNumber(join(dir, 'shell-2')), 'the second attempt to start', 30_000)
      leftovers.push((await readNumber(join(dir, 'shell-2')))!)
      const listing = await eventually(
        async () => (await readFile(join(dir, 'workspace-2'), 'utf8').catch(() => '')) || undefined,
        'the second attempt to list its workspace',
      )
      expect(listing.split('\n').filter(Boolean)).toEqual(['left-by-attempt-2'])
      expect(await readFile(join(dir, 'heartbeat-1'), 'utf8')).toBe(last)

      await writeFile(stop, '')
      const done = await eventually(
        async () => {
          const got = (await api(stack.url, 'GET', '/resources/build/b1')).body
          return got.status?.pipeline?.status === 'running' ? undefined : got
        },
        'the run to end',
        30_000,
      )
      expect(done.status.pipeline.status).toBe('succeeded')
      expect(done.status.steps[0]).toMatchObject({ status: 'succeeded', executions: 2 })
    } finally {
      await writeFile(stop, '')
      for (const pid of leftovers)
        try {
          process.kill(-pid, 'SIGKILL')
        } catch {
          // gone already
        }
      first?.kill('SIGKILL')
      second?.kill('SIGTERM')
      await Promise.all([first?.exited, second?.exited])
    }
  })
})
