import { api, eventually } from '../harness.ts'

/** The driver the fuzz run starts: it runs the seeded pipeline's steps and reconciles `fuzz-svc`. */
export const FUZZ_DRIVER = 'fuzz-runner'

/** A lifecycle with a counter, so events reach a real machine with assigns, tags and a final state. */
export const COUNTER_LIFECYCLE = {
  id: 'fuzz-counter',
  initial: 'open',
  context: { count: 0 },
  states: {
    open: {
      tags: ['accepting'],
      on: {
        INC: { actions: { type: 'assign', params: { count: { $inc: 1 } } } },
        PAUSE: 'paused',
        CLOSE: 'closed',
      },
    },
    paused: { on: { RESUME: 'open', CLOSE: 'closed' } },
    closed: { type: 'final' },
  },
}

/** What the fuzz run seeded: the names, tokens and ids valid requests are made of. */
export interface FuzzState {
  readonly url: string
  readonly port: number
  readonly admin: string
  /** A viewer token (its writes are 403s). */
  readonly viewer: string
  /** An operator token limited to `fuzz-svc` (other types are 403s). */
  readonly limited: string
  /** A run with log lines (of `fuzz-job/j1`'s pipeline). */
  readonly runid: string
  readonly replayId: string
  /** Ids of throw-away tokens, for `DELETE /tokens/:id` (never the admin's). */
  readonly scratchTokenIds: readonly string[]
}

export const STABLE = {
  job: 'fuzz-job',
  counter: 'fuzz-counter',
  svc: 'fuzz-svc',
  pipeline: 'fuzz-pipe',
  jobs: ['j1', 'j2'],
  counters: ['c1', 'c2', 'c3'],
  services: ['s1', 's2'],
} as const

const definitions = [
  { name: STABLE.job, version: '1', schema: { type: 'object', properties: { ref: { type: 'string' } } } },
  { name: STABLE.counter, version: '1', schema: { type: 'object' }, lifecycle: COUNTER_LIFECYCLE },
  {
    name: STABLE.svc,
    version: '1',
    description: 'reconciled by the fuzz driver',
    schema: { type: 'object', properties: { replicas: { type: 'integer', minimum: 0 } } },
  },
]

const pipeline = {
  name: STABLE.pipeline,
  resource: STABLE.job,
  steps: [
    { id: 'build', name: 'Build', driver: FUZZ_DRIVER, timeout: '30s', retries: 1 },
    { id: 'test', driver: FUZZ_DRIVER, needs: ['build'] },
  ],
}

/**
 * Puts the seeded objects back (a fuzzed request may have deleted or changed them): definitions
 * applied, the pipeline created or replaced, missing resources created. Idempotent.
 */
export async function ensureSeeded(url: string, admin: string): Promise<void> {
  const as = { authorization: `Bearer ${admin}` }
  for (const definition of definitions) await api(url, 'POST', '/resource-definitions/apply', definition, as)
  const created = await api(url, 'POST', '/pipelines', pipeline, as)
  if (created.status === 409) await api(url, 'PUT', `/pipelines/${STABLE.pipeline}`, pipeline, as)
  const wanted = [
    ...STABLE.jobs.map((name) => ({ name, resource: STABLE.job, pipeline: STABLE.pipeline, spec: { ref: 'main' } })),
    ...STABLE.counters.map((name) => ({ name, resource: STABLE.counter, labels: { tier: 'fuzz' }, spec: {} })),
    ...STABLE.services.map((name) => ({ name, resource: STABLE.svc, labels: { app: name }, spec: { replicas: 1 } })),
  ]
  for (const resource of wanted) {
    const found = await api(url, 'GET', `/resources/${resource.resource}/${resource.name}`, undefined, as)
    if (found.status === 404) await api(url, 'POST', '/resources', resource, as)
  }
}

/** Seeds the valid state and the tokens the fuzz run uses; waits for a run with log lines. */
export async function seedState(url: string, admin: string): Promise<FuzzState> {
  const as = { authorization: `Bearer ${admin}` }
  const call = async (method: string, path: string, body?: unknown): Promise<any> => {
    const answer = await api(url, method, path, body, as)
    if (answer.status >= 400) throw new Error(`${method} ${path}: ${answer.status} ${JSON.stringify(answer.body)}`)
    return answer.body
  }
  await ensureSeeded(url, admin)
  const run = await eventually(
    async () => {
      const job = await call('GET', `/resources/${STABLE.job}/j1`)
      return job.status?.pipeline?.status === 'succeeded' ? (job.status.runid as string) : undefined
    },
    'the seeded pipeline run to succeed',
    90_000,
  )
  await call('POST', '/logs', { driver: FUZZ_DRIVER, runid: run, message: 'seeded line', stream: 'stdout' })
  const viewer = (await call('POST', '/tokens', { role: 'viewer', description: 'fuzz viewer' })).token as string
  const limited = (await call('POST', '/tokens', { role: 'operator', types: [STABLE.svc] })).token as string
  const scratchTokenIds: string[] = []
  for (let i = 0; i < 5; i++)
    scratchTokenIds.push((await call('POST', '/tokens', { role: 'viewer', description: `scratch ${i}` })).id)
  const replay = await call('POST', '/replay', { driver: FUZZ_DRIVER, type: STABLE.svc, resource: 's1' })
  const port = Number(new URL(url).port)
  return { url, port, admin, viewer, limited, runid: run, replayId: replay.id as string, scratchTokenIds }
}
