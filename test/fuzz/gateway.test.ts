import http from 'node:http'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { defineDriver, runDriver } from 'conveyor'
import { startStack, type Stack } from '../harness.ts'
import { ConveyorProcess, isAlive } from '../processes.ts'
import { TokenStore } from '../../runtime/token-store.ts'
import { createLogger } from '../../runtime/logger.ts'
import { routePolicies } from '../../gateway/access-policy.ts'
import { ensureSeeded, FUZZ_DRIVER, seedState, STABLE, type FuzzState } from './fuzz-state.ts'
import { routeTemplates, STREAM_ROUTES } from './templates.ts'
import { fuzzCase, generateCase } from './generators.ts'
import { describeCase, FuzzTally } from './tally.ts'
import { sendHttp, sendRaw, sendWs, type Outcome } from './transport.ts'

// The hostile-input run (npm run test:fuzz): seeded, so a failure is replayed with the same
// FUZZ_SEED (FUZZ_CASE=n replays one case alone).
const SEED = Number(process.env.FUZZ_SEED ?? 11_2026)
const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000)
const CONCURRENCY = Number(process.env.FUZZ_CONCURRENCY ?? 8)
const ONLY = process.env.FUZZ_CASE === undefined ? undefined : Number(process.env.FUZZ_CASE)
/** How much the gateway's resident memory may grow over the run. */
const MAX_RSS_GROWTH_MB = 150

let stack: Stack
let gateway: ConveyorProcess
let dir: string
let state: FuzzState

const log = (line: string): void => console.log(`[fuzz ${new Date().toISOString()}] ${line}`)

beforeAll(async () => {
  stack = await startStack({ worker: true })
  dir = await mkdtemp(join(tmpdir(), 'conveyor-fuzz-'))
  // The gateway under test: its own process, auth on (the default), against the stack's servers.
  gateway = new ConveyorProcess(['gateway', '--port', '0'], {
    ...stack.env,
    CONVEYOR_AUTH: 'on',
    CONVEYOR_DATA_DIR: dir,
  })
  const url = (await gateway.waitFor(/listening on (http:\/\/\S+)/, 60_000))[1]!
  const admin = (await new TokenStore(stack.connections.etcd).create({ role: 'admin', description: 'fuzz' })).token
  stack.drivers.push(
    await runDriver(
      defineDriver({
        name: FUZZ_DRIVER,
        resources: [STABLE.svc],
        reconcile: async (ctx) => {
          await ctx.log('fuzz driver ran', ctx.event.name, ctx.step?.id ?? 'reconcile')
          return { success: true, message: 'ok' }
        },
      }),
      { connections: stack.connections, logger: createLogger('driver', 'error') },
    ),
  )
  state = await seedState(url, admin)
}, 180_000)

afterAll(async () => {
  gateway?.kill()
  await gateway?.exited
  await stack?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)![1]) / 1024
}

it(`survives ${RUNS} fuzzed requests of every route (seed ${SEED}): no 5xx but 503, problem+json refusals, alive, RSS flat`, async () => {
  const templates = routeTemplates(state)
  // Every route the gateway has is fuzzed: the access-policy table names them all.
  const routes = Object.keys(routePolicies(async () => undefined)).sort()
  expect(templates.map((t) => t.route).sort()).toEqual(routes)
  expect([...STREAM_ROUTES].every((route) => routes.includes(route))).toBe(true)

  const pid = gateway.child.pid!
  const arbitrary = fuzzCase(state, templates)
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY })
  const tally = new FuzzTally()
  const rssStart = await rssMb(pid)
  const rssSamples = [rssStart]
  log(
    `seed ${SEED}, ${RUNS} cases, concurrency ${CONCURRENCY}, gateway pid ${pid} at ${state.url}, RSS ${rssStart.toFixed(1)} MB`,
  )

  const started = Date.now()
  let next = ONLY ?? 0
  const last = ONLY === undefined ? RUNS : ONLY + 1
  let completed = 0
  const runOne = async (index: number): Promise<void> => {
    const request = generateCase(arbitrary, SEED, index)
    const began = Date.now()
    let outcome: Outcome & { closeCode?: number }
    if (request.kind === 'http') outcome = await sendHttp(agent, state.port, request)
    else if (request.kind === 'ws') outcome = await sendWs(state.port, request)
    else outcome = await sendRaw(state.port, request)
    const ms = Date.now() - began
    if (ONLY !== undefined) log(`case ${index}: ${JSON.stringify({ request: describeCase(request), outcome, ms })}`)
    const violations = tally.record(index, request, outcome, ms)
    if (violations.length > 0) log(`case ${index} (${request.route}): ${violations.join('; ')}`)
  }
  const workers = Array.from({ length: CONCURRENCY }, async () => {
    while (next < last) {
      const index = next++
      await runOne(index)
      completed++
      if (completed % 1000 === 0) {
        const rss = await rssMb(pid)
        rssSamples.push(rss)
        log(`${completed} cases in ${((Date.now() - started) / 1000).toFixed(0)} s, RSS ${rss.toFixed(1)} MB`)
        // Fuzzed writes may have deleted or changed the seeded objects: put them back.
        await ensureSeeded(state.url, state.admin)
      }
    }
  })
  await Promise.all(workers)
  const seconds = (Date.now() - started) / 1000
  agent.destroy()

  const health = await fetch(`${state.url}/health`, { signal: AbortSignal.timeout(10_000) })
  const rssEnd = await rssMb(pid)
  rssSamples.push(rssEnd)
  log(`done: ${completed} cases in ${seconds.toFixed(1)} s (${(completed / seconds).toFixed(0)}/s), seed ${SEED}`)
  for (const line of tally.lines()) log(line)
  log(
    `gateway RSS: start ${rssStart.toFixed(1)} MB, end ${rssEnd.toFixed(1)} MB (${(rssEnd - rssStart).toFixed(1)} MB); every 1000 cases: ${rssSamples.map((r) => r.toFixed(0)).join(' ')}`,
  )
  const { violations } = tally
  const report = join(tmpdir(), `conveyor-fuzz-${SEED}.json`)
  const gatewayLog = violations.length > 0 ? gateway.output.slice(-50_000) : undefined
  await writeFile(report, JSON.stringify({ seed: SEED, runs: RUNS, ...tally.toJSON(), gatewayLog }, null, 2))
  log(`${violations.length} violations; the cases (and examples of each outcome) are in ${report}`)

  expect(violations.map((v) => `case ${v.index} ${v.route}: ${v.problems.join('; ')}`)).toEqual([])
  expect(isAlive(pid)).toBe(true)
  expect(health.status).toBe(200)
  expect(rssEnd - rssStart).toBeLessThan(MAX_RSS_GROWTH_MB)
})
