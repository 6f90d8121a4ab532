import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { ConveyorProcess } from './processes.ts'

const FIXTURE = fileURLToPath(new URL('./fixtures/chaos-driver.ts', import.meta.url))
const RUNS = 100

let stack: Stack
let dir: string

beforeAll(async () => {
  stack = await startStack({ worker: true })
  dir = await mkdtemp(join(tmpdir(), 'conveyor-chaos-'))
})
afterAll(async () => {
  await stack?.close()
  await rm(dir, { recursive: true, force: true })
})

describe('pipeline chaos', () => {
  it(
    'kill -9 of driver instances at random moments: every run ends, every completed step was completed once and never ran again',
    { timeout: 240_000 },
    async () => {
      const record = join(dir, 'effects.txt')
      await writeFile(record, '')
      const env = {
        ...stack.env,
        RECORD_FILE: record,
        CONVEYOR_DRIVER_ACK_WAIT_MS: '1500',
        CONVEYOR_DRIVER_MAX_DELIVER: '30',
      }
      const start = async (): Promise<ConveyorProcess> => {
        const instance = new ConveyorProcess(['driver', FIXTURE], env)
        await instance.waitFor(/driver chaos running/)
        return instance
      }
      let instances: ConveyorProcess[] = await Promise.all([start(), start(), start()])
      await api(stack.url, 'POST', '/resource-definitions', { name: 'repo', version: '1', schema: { type: 'object' } })
      await api(stack.url, 'POST', '/pipelines', {
        name: 'ci',
        resource: 'repo',
        steps: [
          { id: 'checkout', driver: 'chaos' },
          { id: 'test', driver: 'chaos', needs: ['checkout'] },
          { id: 'lint', driver: 'chaos', needs: ['checkout'] },
        ],
      })
      const names = Array.from({ length: RUNS }, (_, i) => `run-${i}`)
      await Promise.all(
        names.map(async (name) =>
          expect(
            (await api(stack.url, 'POST', '/resources', { name, resource: 'repo', pipeline: 'ci', spec: {} })).status,
          ).toBe(201),
        ),
      )

      const terminal = async (): Promise<any[] | undefined> => {
        const listed = await api(stack.url, 'GET', `/resources/repo?limit=${RUNS}`)
        const items = listed.body.items as any[]
        return items.length === RUNS &&
          items.every((r) => ['succeeded', 'failed', 'cancelled'].includes(r.status.pipeline?.status))
          ? items
          : undefined
      }
      // Kill a random instance every so often (some steps die mid-execution) and start a new one.
      let kills = 0
      for (let round = 0; round < 12 && !(await terminal()); round++) {
        await new Promise((resolve) => setTimeout(resolve, 200 + Math.floor(Math.random() * 300)))
        const victim = Math.floor(Math.random() * instances.length)
        instances[victim]!.kill('SIGKILL')
        await instances[victim]!.exited
        kills++
        instances = instances.filter((_, i) => i !== victim)
        instances.push(await start())
      }
      try {
        const runs = await eventually(terminal, 'every run to end', 180_000)
        const lines = (await readFile(record, 'utf8'))
          .split('\n')
          .filter(Boolean)
          .map((line) => line.split(' ') as [string, string, string, 'start' | 'done'])
        let reExecuted = 0
        for (const run of runs) {
          expect(run.status.pipeline.status).toBe('succeeded')
          for (const step of run.status.steps) {
            const mine = lines.filter(([runid, id]) => runid === run.runid && id === step.id)
            const starts = mine.filter(([, , , what]) => what === 'start').map(([, , attempt]) => Number(attempt))
            // Every execution has its own attempt number…
            expect(new Set(starts).size).toBe(starts.length)
            // …the completed one finished its side effect, and nothing ran after it.
            const completed = step.data.attempt as number
            expect(mine.some(([, , attempt, what]) => Number(attempt) === completed && what === 'done')).toBe(true)
            expect(Math.max(...starts)).toBe(completed)
            if (starts.length > 1) reExecuted++
          }
        }
        // Recorded as completed exactly once: one succeeded step.result per step and run.
        for (const run of runs.slice(0, 20)) {
          const history = await api(stack.url, 'GET', `/resources/repo/${run.name}/history?kind=step.result&limit=100`)
          const succeeded = history.body.items
            .filter((item: any) => item.event.step.status === 'succeeded')
            .map((item: any) => item.event.step.id)
          expect(succeeded.sort()).toEqual(['checkout', 'lint', 'test'])
        }
        expect(kills).toBeGreaterThan(0)
        expect(reExecuted).toBeGreaterThan(0)
      } finally {
        for (const instance of instances) instance.kill('SIGTERM')
        await Promise.all(instances.map((instance) => instance.exited))
      }
    },
  )
})
