import { readFile } from 'node:fs/promises'
import { setTimeout as delay } from 'node:timers/promises'
import { Etcd3, type IKeyValue } from 'etcd3'
import { keys } from '../../runtime/keys.ts'
import type { AcceptedCreate, Load } from './load.ts'
import type { Watcher } from './watchers.ts'

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled'])

/** One broken invariant, with what is needed to look into it. */
export interface Breach {
  readonly invariant: string
  readonly subject: string
  readonly detail: string
}

async function getJson(url: string): Promise<{ status: number; body: any }> {
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(30_000) })
      const text = await response.text()
      if (response.status === 503 && attempt < 20) {
        await delay(1000)
        continue
      }
      return { status: response.status, body: text ? JSON.parse(text) : undefined }
    } catch (error) {
      if (attempt >= 20) throw error
      await delay(1000)
    }
  }
}

/** 0 accepted resources lost: every create the API accepted is there. */
export async function lostResources(base: string, accepted: readonly AcceptedCreate[]): Promise<Breach[]> {
  const breaches: Breach[] = []
  for (const created of accepted) {
    const got = await getJson(`${base}/resources/${created.type}/${created.name}`)
    if (got.status !== 200)
      breaches.push({
        invariant: 'accepted resource lost',
        subject: `${created.type}/${created.name}`,
        detail: `accepted during "${created.phase}"${created.ambiguous ? ' (as 409 after a lost answer)' : ''}, now ${got.status} ${got.body?.detail ?? ''}`,
      })
  }
  return breaches
}

/** Every `transitioned` event of a resource, by the `ref` its event carried. */
async function transitionsByRef(base: string, type: string, name: string): Promise<Map<string, number[]>> {
  const refs = new Map<string, number[]>()
  let after = 0
  for (;;) {
    const page = await getJson(
      `${base}/resources/${type}/${name}/history?kind=transitioned&limit=1000${after ? `&after=${after}` : ''}`,
    )
    if (page.status !== 200) throw new Error(`history of ${type}/${name}: ${page.status} ${page.body?.detail}`)
    for (const item of page.body.items as { seq: number; event: { event?: { ref?: string } } }[]) {
      const ref = item.event.event?.ref
      if (ref) refs.set(ref, [...(refs.get(ref) ?? []), item.seq])
    }
    if (page.body.next === undefined) return refs
    after = page.body.next
  }
}

/** 0 transitions lost or applied twice: each event the API accepted is in its ledger's history once, and the count agrees. */
export async function transitionBreaches(base: string, load: Load): Promise<{ lost: Breach[]; doubled: Breach[] }> {
  const lost: Breach[] = []
  const doubled: Breach[] = []
  const ledgers = new Set(load.events.map((event) => event.ledger))
  for (const ledger of ledgers) {
    const refs = await transitionsByRef(base, 'ledger', ledger)
    const sent = load.events.filter((event) => event.ledger === ledger)
    for (const event of sent) {
      const seqs = refs.get(event.id) ?? []
      const accepted = event.outcome === 'applied' || event.outcome === 'duplicate' || event.outcome === 'stored'
      if (accepted && seqs.length === 0)
        lost.push({
          invariant: 'accepted event not applied',
          subject: `ledger/${ledger} ${event.id}`,
          detail: `answered ${event.outcome} during "${event.phase}" after ${event.retries} retries; not in the history`,
        })
      if (seqs.length > 1)
        doubled.push({
          invariant: 'event applied twice',
          subject: `ledger/${ledger} ${event.id}`,
          detail: `sent during "${event.phase}" (${event.retries} retries, answered ${event.outcome}); transitioned at seqs ${seqs.join(', ')}`,
        })
      if (event.outcome === 'rejected' && seqs.length > 0)
        doubled.push({
          invariant: 'event answered 409 but applied',
          subject: `ledger/${ledger} ${event.id}`,
          detail: `sent during "${event.phase}"; transitioned at seqs ${seqs.join(', ')}`,
        })
    }
    const actor = await getJson(`${base}/resources/ledger/${ledger}/actor`)
    const applied = [...refs.values()].reduce((sum, seqs) => sum + seqs.length, 0)
    if (actor.status === 200 && actor.body.context?.total !== applied)
      doubled.push({
        invariant: 'ledger count disagrees with its history',
        subject: `ledger/${ledger}`,
        detail: `context.total ${actor.body.context?.total}, ${applied} transitioned events`,
      })
  }
  return { lost, doubled }
}

interface StepStatus {
  readonly id: string
  readonly status: string
  readonly data?: { attempt?: number | string }
  readonly executions?: number
  readonly message?: string
}

/** Waits until every accepted run is terminal, or the deadline passes; answers each run's resource. */
export async function settleRuns(
  base: string,
  runs: readonly AcceptedCreate[],
  deadlineMs: number,
): Promise<{ resources: Map<string, any>; stuck: Breach[]; failed: Breach[] }> {
  const resources = new Map<string, any>()
  const deadline = Date.now() + deadlineMs
  let pending = [...runs]
  while (pending.length > 0 && Date.now() < deadline) {
    const still: AcceptedCreate[] = []
    for (const run of pending) {
      const got = await getJson(`${base}/resources/fjob/${run.name}`)
      if (got.status === 200) resources.set(run.name, got.body)
      if (got.status !== 200 || !TERMINAL.has(got.body.status?.pipeline?.status)) still.push(run)
    }
    pending = still
    if (pending.length > 0) await delay(2000)
  }
  const describeSteps = (resource: any): string =>
    ((resource?.status?.steps ?? []) as StepStatus[])
      .map((s) => `${s.id}=${s.status}(executions ${s.executions ?? '?'}${s.message ? `: ${s.message}` : ''})`)
      .join(', ')
  const stuck = pending.map((run) => {
    const resource = resources.get(run.name)
    return {
      invariant: 'run not terminal by the deadline',
      subject: `fjob/${run.name} runid ${resource?.status?.runid ?? '?'}`,
      detail: `created during "${run.phase}"; pipeline ${resource?.status?.pipeline?.status ?? 'missing'}; ${describeSteps(resource)}`,
    }
  })
  const failed: Breach[] = []
  for (const [name, resource] of resources) {
    const status = resource.status?.pipeline?.status
    if (status === 'failed' || status === 'cancelled')
      failed.push({
        invariant: 'run failed',
        subject: `fjob/${name} runid ${resource.status.runid}`,
        detail: `${status}: ${resource.status.pipeline.message ?? ''}; ${describeSteps(resource)}`,
      })
  }
  return { resources, stuck, failed }
}

/** 0 completed steps run again: no execution of a step starts after the one its run recorded as completed. */
export async function stepBreaches(
  recordFile: string,
  resources: ReadonlyMap<string, any>,
): Promise<{ doubled: Breach[]; reExecuted: number; steps: number }> {
  const lines = (await readFile(recordFile, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' ') as [string, string, string, string, 'start' | 'done'])
  const byStep = new Map<string, { attempt: number; what: string; instance: string }[]>()
  for (const [runid, step, attempt, instance, what] of lines) {
    const key = `${runid} ${step}`
    byStep.set(key, [...(byStep.get(key) ?? []), { attempt: Number(attempt), what, instance }])
  }
  const doubled: Breach[] = []
  let reExecuted = 0
  let steps = 0
  for (const [name, resource] of resources) {
    for (const step of (resource.status?.steps ?? []) as StepStatus[]) {
      if (step.status !== 'succeeded') continue
      steps++
      const runs = byStep.get(`${resource.status.runid} ${step.id}`) ?? []
      const completed = Number(step.data?.attempt)
      const starts = runs.filter((r) => r.what === 'start')
      if (starts.length > 1) reExecuted++
      const after = starts.filter((r) => r.attempt > completed)
      if (after.length > 0)
        doubled.push({
          invariant: 'completed step ran again',
          subject: `fjob/${name} runid ${resource.status.runid} step ${step.id}`,
          detail: `completed by attempt ${completed}; then attempt(s) ${after.map((r) => `${r.attempt} on ${r.instance}`).join(', ')} started`,
        })
      if (!runs.some((r) => r.what === 'done' && r.attempt === completed))
        doubled.push({
          invariant: 'step recorded as completed by an execution that did not finish',
          subject: `fjob/${name} runid ${resource.status.runid} step ${step.id}`,
          detail: `completed attempt ${completed}; executions: ${runs.map((r) => `${r.attempt} ${r.what} on ${r.instance}`).join(', ')}`,
        })
    }
  }
  return { doubled, reExecuted, steps }
}

/** No log line of a finished step missing, on every gateway. */
export async function missingLogLines(
  bases: readonly string[],
  resources: ReadonlyMap<string, any>,
): Promise<Breach[]> {
  const breaches: Breach[] = []
  for (const [name, resource] of resources) {
    if (resource.status?.pipeline?.status !== 'succeeded') continue
    const runid = resource.status.runid as string
    const prefix = name.startsWith('rec-') ? 'frec' : 'sh'
    for (const base of bases) {
      const got = await getJson(`${base}/logs?runid=${runid}&limit=10000`)
      const lines = (Array.isArray(got.body) ? got.body : (got.body?.items ?? [])) as { message?: string }[]
      const messages = new Set(lines.map((line) => line.message))
      for (const step of resource.status.steps as StepStatus[])
        for (let i = 1; i <= 3; i++) {
          const expected = `${prefix} ${step.id} line ${i}`
          if (!messages.has(expected))
            breaches.push({
              invariant: 'log line of a finished step missing',
              subject: `fjob/${name} runid ${runid} on ${base}`,
              detail: `no "${expected}" among ${lines.length} line(s)`,
            })
        }
    }
  }
  return breaches
}

/** Every committed change of a type after `from` as `revision name`, read from etcd itself (what a watch must deliver). */
async function committedChanges(
  endpoints: readonly string[],
  type: string,
  from: number,
  auth: { username: string; password: string } | undefined,
): Promise<{ changes: Set<string>; end: number }> {
  const etcd = new Etcd3({ hosts: [...endpoints], ...(auth ? { auth } : {}) })
  try {
    const prefix = keys.resources(type)
    const current = await etcd.getAll().prefix(prefix).exec()
    const end = Math.max(0, ...current.kvs.map((kv: IKeyValue) => Number(kv.mod_revision)))
    const changes = new Set<string>()
    if (end <= from) return { changes, end }
    const watcher = await etcd
      .watch()
      .prefix(prefix)
      .withPreviousKV()
      .startRevision(String(from + 1))
      .create()
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`reading the changes of ${type} from etcd timed out`)), 60_000)
      watcher.on('data', (response) => {
        for (const event of response.events) {
          const source = event.type === 'Delete' ? event.prev_kv : event.kv
          if (source && source.value.length > 0)
            changes.add(`${event.kv.mod_revision} ${(JSON.parse(source.value.toString()) as { name: string }).name}`)
          if (Number(event.kv.mod_revision) >= end) {
            clearTimeout(timer)
            resolve()
          }
        }
      })
    })
    await watcher.cancel()
    return { changes, end }
  } finally {
    etcd.close()
  }
}

/** Every watcher saw every committed revision of its type after its list, once. */
export async function watchBreaches(
  endpoints: readonly string[],
  watchers: readonly { watcher: Watcher; type: string }[],
  auth?: { username: string; password: string },
): Promise<{ lost: Breach[]; doubled: Breach[]; revisions: number }> {
  const lost: Breach[] = []
  const doubled: Breach[] = []
  let revisions = 0
  for (const { watcher, type } of watchers) {
    const from = watcher.listRevision ?? 0
    const { changes: committed, end } = await committedChanges(endpoints, type, from, auth)
    // Give it time to catch up (it may be resuming after the last fault).
    const deadline = Date.now() + 60_000
    while (watcher.last < end && Date.now() < deadline) await delay(250)
    revisions += committed.size
    const missing = [...committed].filter((revision) => !watcher.seen.has(revision))
    if (missing.length > 0)
      lost.push({
        invariant: 'watcher missed committed revisions',
        subject: `${watcher.name} (${type})`,
        detail: `${missing.length} of ${committed.size} changes missing, e.g. ${missing.slice(0, 10).join(', ')}; reconnects ${watcher.reconnects} (${JSON.stringify(Object.fromEntries(watcher.errors))})`,
      })
    const twice = [...watcher.seen].filter(([, count]) => count > 1).map(([change]) => change)
    if (twice.length > 0)
      doubled.push({
        invariant: 'watcher saw a revision twice',
        subject: `${watcher.name} (${type})`,
        detail: `${twice.length} changes, e.g. ${twice.slice(0, 10).join(', ')}`,
      })
    const extra = [...watcher.seen.keys()].filter(
      (change) => Number(change.split(' ')[0]) > from && !committed.has(change),
    )
    if (extra.length > 0)
      doubled.push({
        invariant: 'watcher saw a revision etcd does not have',
        subject: `${watcher.name} (${type})`,
        detail: `e.g. ${extra.slice(0, 10).join(', ')}`,
      })
    for (const anomaly of watcher.anomalies.slice(0, 5))
      doubled.push({
        invariant: 'watch out of order',
        subject: watcher.name,
        detail: `${anomaly.what} at ${anomaly.at}`,
      })
  }
  return { lost, doubled, revisions }
}
