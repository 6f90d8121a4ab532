import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { streams } from '../runtime/keys.ts'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { ConveyorProcess } from './processes.ts'

const FLOOD = fileURLToPath(new URL('./fixtures/log-flood-driver.ts', import.meta.url))
/** A driver whose RSS passes this is killed at once: the test fails instead of taking the machine down. */
const RSS_GUARD = 1536 * 1024 * 1024
/** How much a driver's RSS may grow over its idle size while a step floods its log (without limits: past 1.5 GiB). */
const RSS_GROWTH_LIMIT = 256 * 1024 * 1024
const MARKER = /^… log truncated after (\d+) bytes \((\d+) lines\)/

let stack: Stack
let dir: string

beforeAll(async () => {
  stack = await startStack({ worker: true })
  dir = await mkdtemp(join(tmpdir(), 'conveyor-log-limits-'))
  expect(
    (await api(stack.url, 'POST', '/resource-definitions', { name: 'build', version: '1', schema: { type: 'object' } }))
      .status,
  ).toBe(201)
})
afterAll(async () => {
  await stack?.close()
  await rm(dir, { recursive: true, force: true })
})

const rssOf = (pid: number): number | undefined => {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) * 1024 : undefined
  } catch {
    return undefined
  }
}

/** Samples a process's RSS every 50 ms; past the guard it kills the process. */
function sampleRss(driver: ConveyorProcess): {
  readonly peak: () => number
  readonly killed: () => boolean
  stop(): void
} {
  let peak = 0
  let killed = false
  const timer = setInterval(() => {
    const rss = rssOf(driver.child.pid!)
    if (rss === undefined) return
    peak = Math.max(peak, rss)
    if (rss > RSS_GUARD && !killed) {
      killed = true
      driver.kill('SIGKILL')
    }
  }, 50)
  return { peak: () => peak, killed: () => killed, stop: () => clearInterval(timer) }
}

/** The idle RSS of a freshly started driver, once it settled. */
async function idleRss(driver: ConveyorProcess): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 1500))
  return rssOf(driver.child.pid!)!
}

async function runPipeline(name: string, steps: unknown[]): Promise<{ runid: string; status: any }> {
  expect((await api(stack.url, 'POST', '/pipelines', { name, resource: 'build', steps })).status).toBe(201)
  const created = await api(stack.url, 'POST', '/resources', { name, resource: 'build', pipeline: name, spec: {} })
  expect(created.status).toBe(201)
  const status = await eventually(
    async () => {
      const got = await api(stack.url, 'GET', `/resources/build/${name}`)
      return ['succeeded', 'failed', 'cancelled'].includes(got.body.status?.pipeline?.status)
        ? got.body.status
        : undefined
    },
    `run ${name} to finish`,
    180_000,
  )
  return { runid: created.body.runid, status }
}

/**
 * Every stored line of a step, in order, once the gateway's log index holds all the log stream
 * had when the run finished. A step's lines (its truncation marker included) are stored in the
 * stream before the step reports, so they are all in by then; the gateway copies them into its
 * index asynchronously, and right after the run succeeded the last ones may not be there yet.
 */
async function storedLines(runid: string, step: string): Promise<any[]> {
  const published = (await stack.connections.jsm.streams.info(streams.logs)).state.last_seq
  await eventually(
    () => (stack.gateway.logs.lastSeq >= published ? true : undefined),
    `the gateway's log index to store the log stream up to ${published}`,
    60_000,
  )
  const lines: any[] = []
  let after = 0
  for (;;) {
    const page = await api(stack.url, 'GET', `/logs?runid=${runid}&limit=50000${after > 0 ? `&after=${after}` : ''}`)
    expect(page.status).toBe(200)
    lines.push(...page.body.filter((l: any) => l.step === step))
    // An answer cut short by its size says where the rest starts.
    const next = page.headers.get('conveyor-next-after')
    if (next) after = Number(next)
    else if (page.body.length < 50_000) return lines
    else after = page.body.at(-1).seq
  }
}

describe('log limits of a driver', () => {
  it('a shell step running `yes | head -c 50000000` finishes, the driver stays small, and its log ends with a truncation marker', async () => {
    const driver = new ConveyorProcess(['driver', 'shell'], {
      ...stack.env,
      CONVEYOR_DATA_DIR: dir,
      CONVEYOR_LOG_STEP_MAX_LINES: '20000',
      CONVEYOR_LOG_STEP_MAX_BYTES: '1MiB',
    })
    try {
      await driver.waitFor(/Conveyor driver shell running/)
      const idle = await idleRss(driver)
      const rss = sampleRss(driver)
      let run: Awaited<ReturnType<typeof runPipeline>>
      try {
        run = await Promise.race([
          runPipeline('yes-flood', [
            { id: 'yes', driver: 'shell', commands: ['yes | head -c 50000000', 'echo after the flood'] },
            { id: 'wide', driver: 'shell', needs: ['yes'], commands: ['yes "$(printf \'%0999d\' 0)" | head -n 3000'] },
          ]),
          driver.exited.then(({ code, signal }) => {
            throw new Error(
              `the driver exited (${code ?? signal}) while the step ran${rss.killed() ? `: RSS passed ${RSS_GUARD} bytes` : ''}\n${driver.output.slice(-2000)}`,
            )
          }),
        ])
      } finally {
        rss.stop()
      }
      console.log(
        `shell driver RSS: idle ${(idle / 2 ** 20).toFixed(0)} MiB, peak ${(rss.peak() / 2 ** 20).toFixed(0)} MiB`,
      )
      expect(run.status.pipeline.status).toBe('succeeded')
      expect(rss.peak() - idle).toBeLessThan(RSS_GROWTH_LIMIT)

      // The line limit: the command line, 19,999 lines of output, then the marker; `echo after the flood` is dropped too.
      const yes = await storedLines(run.runid, 'yes')
      expect(yes).toHaveLength(20_001)
      expect(yes[0].message).toBe('$ yes | head -c 50000000')
      expect(yes.slice(1, -1).every((l: any) => l.message === 'y')).toBe(true)
      const marker = MARKER.exec(yes.at(-1).message)
      expect(marker, yes.at(-1).message).not.toBeNull()
      expect(Number(marker![2])).toBe(20_000)

      // The byte limit: 1 MiB of 1000-byte lines, then the marker.
      const wide = await storedLines(run.runid, 'wide')
      const wideMarker = MARKER.exec(wide.at(-1).message)
      expect(wideMarker, wide.at(-1).message).not.toBeNull()
      expect(Number(wideMarker![1])).toBeLessThanOrEqual(1024 * 1024)
      expect(Number(wideMarker![1])).toBeGreaterThan(1024 * 1024 - 1000)
      expect(wide).toHaveLength(Number(wideMarker![2]) + 1)
      expect(wide.slice(1, -1).every((l: any) => l.message.length === 999)).toBe(true)
    } finally {
      driver.kill('SIGTERM')
      await driver.exited
    }
  }, 300_000)

  it('a driver that logs in a tight loop without waiting stays small, and its log ends with a truncation marker at the default limit', async () => {
    const driver = new ConveyorProcess(['driver', FLOOD], {
      ...stack.env,
      FLOOD_LINES: '3000000',
    })
    try {
      await driver.waitFor(/Conveyor driver flood running/)
      const idle = await idleRss(driver)
      const rss = sampleRss(driver)
      let run: Awaited<ReturnType<typeof runPipeline>>
      try {
        run = await Promise.race([
          runPipeline('loop-flood', [{ id: 'loop', driver: 'flood' }]),
          driver.exited.then(({ code, signal }) => {
            throw new Error(
              `the driver exited (${code ?? signal}) while the step ran${rss.killed() ? `: RSS passed ${RSS_GUARD} bytes` : ''}\n${driver.output.slice(-2000)}`,
            )
          }),
        ])
      } finally {
        rss.stop()
      }
      console.log(
        `flood driver RSS: idle ${(idle / 2 ** 20).toFixed(0)} MiB, peak ${(rss.peak() / 2 ** 20).toFixed(0)} MiB`,
      )
      expect(run.status.pipeline.status).toBe('succeeded')
      expect(rss.peak() - idle).toBeLessThan(RSS_GROWTH_LIMIT)
      // 120-byte lines: the default 10 MiB ends the log before the default 100,000 lines.
      const lines = await storedLines(run.runid, 'loop')
      const marker = MARKER.exec(lines.at(-1).message)
      expect(marker, lines.at(-1).message).not.toBeNull()
      expect(Number(marker![1])).toBeLessThanOrEqual(10 * 1024 * 1024)
      expect(lines).toHaveLength(Number(marker![2]) + 1)
      expect(lines.slice(0, -1).map((l: any) => l.message.slice(0, 9))).toEqual(
        Array.from({ length: lines.length - 1 }, (_, i) => String(i).padStart(9, '0')),
      )
    } finally {
      driver.kill('SIGTERM')
      await driver.exited
    }
  }, 300_000)
})
