import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { FaultApi } from './api-client.ts'
import type { Fault, InjectedFault } from './faults.ts'
import {
  lostResources,
  missingLogLines,
  settleRuns,
  stepBreaches,
  transitionBreaches,
  watchBreaches,
  type Breach,
} from './invariants.ts'
import { FULL_RATES, Load, SHORT_RATES } from './load.ts'
import { startTopology, type Topology } from './topology.ts'
import { Watcher } from './watchers.ts'

/** `FAULTS_SHORT=1`: 10 s pauses only and a lighter load, for CI. */
export const SHORT = process.env.FAULTS_SHORT === '1'

/** The figures a fault suite prints (and writes as JSON next to the processes' logs). */
export interface Figures {
  readonly suite: string
  readonly short: boolean
  readonly seconds: number
  readonly operations: { readonly requests: number; readonly byAnswer: Record<string, number> }
  readonly accepted: {
    readonly resources: number
    readonly events: number
    readonly runs: number
    readonly updates: number
  }
  readonly faults: readonly InjectedFault[]
  readonly lost: {
    readonly resources: number
    readonly transitions: number
    readonly logLines: number
    readonly watchRevisions: number
  }
  readonly doubled: {
    readonly transitions: number
    readonly stepsRunAfterCompletion: number
    readonly watchRevisions: number
  }
  readonly stuck: { readonly runs: number }
  readonly failedRuns: number
  readonly stepsReExecuted: number
  readonly api: {
    readonly '5xx': number
    readonly hangs: number
    readonly '503WithoutRetryAfter': number
    readonly slow: number
    readonly maxMs: number
  }
  readonly loadAnomalies: number
  readonly logs: string
}

export interface ScenarioResult {
  readonly figures: Figures
  readonly breaches: readonly Breach[]
}

export interface ScenarioOptions {
  readonly suite: string
  readonly cluster: boolean
  readonly faults: readonly Fault[]
  /** Quiet time before the first fault and after each one. @default 15 s (8 s short) */
  readonly recoverySeconds?: number
  /** How long runs may take to end once the last fault is over. @default 240 s */
  readonly runDeadlineSeconds?: number
}

/** Waits until every gateway answers /ready (or the time runs out: the invariants will tell). */
async function ready(urls: readonly string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (const url of urls)
    while (Date.now() < deadline) {
      const ok = await fetch(`${url}/ready`, { signal: AbortSignal.timeout(5000) }).then(
        (r) => r.ok,
        () => false,
      )
      if (ok) break
      await delay(500)
    }
}

function table(figures: Figures): string {
  const rows: [string, string | number][] = [
    ['suite', `${figures.suite}${figures.short ? ' (short)' : ''}`],
    ['duration (s)', figures.seconds],
    ['operations under load (requests)', figures.operations.requests],
    [
      'accepted resources / events / runs / updates',
      `${figures.accepted.resources} / ${figures.accepted.events} / ${figures.accepted.runs} / ${figures.accepted.updates}`,
    ],
    ['faults injected', figures.faults.length],
    ['lost: resources', figures.lost.resources],
    ['lost: transitions', figures.lost.transitions],
    ['lost: log lines of finished steps', figures.lost.logLines],
    ['lost: watch revisions', figures.lost.watchRevisions],
    ['doubled: transitions', figures.doubled.transitions],
    ['doubled: completed steps run again', figures.doubled.stepsRunAfterCompletion],
    ['doubled: watch revisions', figures.doubled.watchRevisions],
    ['stuck: runs not terminal', figures.stuck.runs],
    ['failed runs', figures.failedRuns],
    ['steps executed more than once (before completion)', figures.stepsReExecuted],
    ['API 5xx other than 503', figures.api['5xx']],
    ['API hangs (no answer in time)', figures.api.hangs],
    ['API 503 without Retry-After', figures.api['503WithoutRetryAfter']],
    ['API slow answers', figures.api.slow],
    ['API slowest answer (ms)', figures.api.maxMs],
    ['load anomalies (unexpected 4xx…)', figures.loadAnomalies],
  ]
  const width = Math.max(...rows.map(([name]) => name.length))
  return [
    ...rows.map(([name, value]) => `${name.padEnd(width)}  ${value}`),
    'faults:',
    ...figures.faults.map((f) => `  ${f.at}  ${f.fault} (${f.seconds} s)`),
  ].join('\n')
}

/**
 * Runs one fault suite: the topology, the load and the watchers; each fault in turn with a quiet
 * period after it; then the load stops (every operation in flight gets its definitive answer),
 * runs get time to end, and every invariant is checked. Prints the figures (table and JSON).
 */
export async function runScenario(options: ScenarioOptions): Promise<ScenarioResult> {
  const started = Date.now()
  const recovery = (options.recoverySeconds ?? (SHORT ? 8 : 15)) * 1000
  let phase = 'setup'
  const topology: Topology = await startTopology({ cluster: options.cluster })
  try {
    const api = new FaultApi(
      () => topology.urls,
      { slowMs: 15_000, abortMs: 30_000 },
      () => phase,
    )
    const load = new Load(api, SHORT ? SHORT_RATES : FULL_RATES, topology.recordFile, () => phase)
    await load.setup()
    const watchers = [
      { watcher: new Watcher('watcher-fitem-1', 'fitem', topology.urls, 0), type: 'fitem' },
      { watcher: new Watcher('watcher-fitem-2', 'fitem', topology.urls, 1), type: 'fitem' },
      { watcher: new Watcher('watcher-fjob-1', 'fjob', topology.urls, 0), type: 'fjob' },
    ]
    await Promise.all(watchers.map(({ watcher }) => watcher.start()))
    phase = 'steady'
    load.start()
    await delay(recovery)
    const injected: InjectedFault[] = []
    for (const fault of options.faults) {
      phase = fault.name
      const at = Date.now()
      // Many steps in flight (claiming, running, reporting) when the fault hits.
      await Promise.race([load.burst(), delay(5000)])
      await delay(500)
      log(`fault: ${fault.name}`)
      await fault.inject(topology)
      injected.push({
        fault: fault.name,
        at: new Date(at).toISOString(),
        seconds: Math.round((Date.now() - at) / 1000),
      })
      phase = `after ${fault.name}`
      await ready(topology.urls, 60_000)
      await delay(recovery)
    }
    phase = 'draining'
    log('stopping the load')
    await load.stop()
    log('waiting for runs to end')
    const base = topology.urls[0]!
    const runs = load.accepted.filter((created) => created.type === 'fjob')
    const settled = await settleRuns(base, runs, (options.runDeadlineSeconds ?? 240) * 1000)
    log('checking invariants')
    const lostCreated = await lostResources(base, load.accepted)
    const transitions = await transitionBreaches(base, load)
    const steps = await stepBreaches(topology.recordFile, settled.resources)
    const logLines = await missingLogLines(topology.urls, settled.resources)
    const watches = await watchBreaches(topology.servers.etcdEndpoints, watchers, topology.servers.credentials.etcd)
    for (const { watcher } of watchers) watcher.stop()
    const logs = await topology.saveOutputs()
    const violations = (what: string): number => api.violations.filter((v) => v.what === what).length
    const byAnswer = Object.fromEntries([...api.counts].sort(([a], [b]) => a.localeCompare(b)))
    const figures: Figures = {
      suite: options.suite,
      short: SHORT,
      seconds: Math.round((Date.now() - started) / 1000),
      operations: { requests: api.requests, byAnswer },
      accepted: {
        resources: load.accepted.length,
        events: load.events.filter((e) => e.outcome !== 'rejected' && e.outcome !== 'unanswered').length,
        runs: runs.length,
        updates: load.updates,
      },
      faults: injected,
      lost: {
        resources: lostCreated.length,
        transitions: transitions.lost.length,
        logLines: logLines.length,
        watchRevisions: watches.lost.length,
      },
      doubled: {
        transitions: transitions.doubled.length,
        stepsRunAfterCompletion: steps.doubled.length,
        watchRevisions: watches.doubled.length,
      },
      stuck: { runs: settled.stuck.length },
      failedRuns: settled.failed.length,
      stepsReExecuted: steps.reExecuted,
      api: {
        '5xx': violations('5xx'),
        hangs: violations('hang'),
        '503WithoutRetryAfter': violations('503 without Retry-After'),
        slow: violations('slow'),
        maxMs: api.maxMs,
      },
      loadAnomalies: load.anomalies.length,
      logs,
    }
    const apiBreaches: Breach[] = api.violations
      .filter((v) => v.what !== 'slow')
      .map((v) => ({
        invariant: `API ${v.what}`,
        subject: `${v.op} ${v.path}`,
        detail: `during "${v.phase}" at ${v.at}, ${v.ms} ms${v.status ? `, ${v.status}` : ''}${v.detail ? `: ${v.detail}` : ''}`,
      }))
    const breaches: Breach[] = [
      ...lostCreated,
      ...transitions.lost,
      ...transitions.doubled,
      ...steps.doubled,
      ...settled.stuck,
      ...settled.failed,
      ...logLines,
      ...watches.lost,
      ...watches.doubled,
      ...apiBreaches,
      ...load.anomalies.map((a) => ({ invariant: `load anomaly (${a.op})`, subject: a.phase, detail: a.detail })),
    ]
    await writeFile(join(logs, 'figures.json'), JSON.stringify({ figures, breaches }, null, 2))
    const slowest = api.violations.filter((v) => v.what === 'slow').slice(0, 5)
    console.log(
      [
        `\n=== fault suite: ${options.suite} ===`,
        table(figures),
        `processes' logs and figures.json: ${logs}`,
        ...(breaches.length > 0 ? ['breaches (first 40):'] : []),
        ...summarise(breaches).slice(0, 40),
        ...(slowest.length > 0
          ? ['slow answers (first 5):', ...slowest.map((v) => `  ${v.op} ${v.path} ${v.ms} ms during "${v.phase}"`)]
          : []),
        'figures (JSON):',
        JSON.stringify(figures),
      ].join('\n'),
    )
    return { figures, breaches }
  } catch (error) {
    log(`the suite failed before its checks: ${String(error)}; processes' logs: ${await topology.saveOutputs()}`)
    throw error
  } finally {
    await topology.close()
  }
}

/** Breaches grouped by invariant, a few examples each. */
function summarise(breaches: readonly Breach[]): string[] {
  const groups = new Map<string, Breach[]>()
  for (const breach of breaches) groups.set(breach.invariant, [...(groups.get(breach.invariant) ?? []), breach])
  const lines: string[] = []
  for (const [invariant, group] of groups) {
    lines.push(`  ${invariant}: ${group.length}`)
    for (const breach of group.slice(0, 5)) lines.push(`    ${breach.subject}: ${breach.detail}`)
  }
  return lines
}

function log(line: string): void {
  console.log(`[faults ${new Date().toISOString()}] ${line}`)
}
