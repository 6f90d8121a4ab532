import type { FuzzCase } from './cases.ts'
import type { Outcome } from './transport.ts'

/** What a report shows of a request: enough to send it again. */
export function describeCase(request: FuzzCase): Record<string, unknown> {
  if (request.kind === 'http')
    return {
      kind: 'http',
      method: request.method,
      path: request.path.slice(0, 2000),
      headers: request.headers,
      bodyBytes: request.body?.length ?? 0,
      body: request.body?.subarray(0, 2000).toString('utf8'),
    }
  if (request.kind === 'ws')
    return {
      kind: 'ws',
      path: request.path,
      protocols: request.protocols.map((p) => p.slice(0, 40)),
      headers: request.headers,
      frames: request.frames.map((f) => (typeof f === 'string' ? f.slice(0, 500) : `<${f.length} bytes>`)),
    }
  return { kind: 'raw', variant: request.variant, bytes: request.bytes.subarray(0, 2000).toString('latin1') }
}

export interface Violation {
  readonly index: number
  readonly route: string
  readonly problems: readonly string[]
  readonly request: unknown
  readonly answer?: string
}

const bump = <K>(map: Map<K, number>, key: K): void => void map.set(key, (map.get(key) ?? 0) + 1)
const sortedEntries = <V>(map: Map<string, V>): [string, V][] => [...map].sort(([a], [b]) => a.localeCompare(b))
/** A few examples per outcome are kept. */
const EXAMPLES = 3

/** Counts a fuzz run's outcomes (by status, kind, route, raw variant, close code) and keeps its violations and findings. */
export class FuzzTally {
  readonly counts = new Map<string, number>()
  readonly byKind = new Map<string, number>()
  readonly byRoute = new Map<string, Map<string, number>>()
  readonly rawLabels = new Map<string, number>()
  readonly closeCodes = new Map<string, number>()
  readonly findings = new Map<string, { count: number; index: number; request: unknown; answer?: string }>()
  readonly violations: Violation[] = []
  readonly examples = new Map<string, unknown[]>()
  slowest: { ms: number; index: number; route: string; request: unknown }[] = []

  /** Records one case; returns its violations (empty when it held). */
  record(index: number, request: FuzzCase, outcome: Outcome & { closeCode?: number }, ms: number): readonly string[] {
    bump(this.counts, outcome.label)
    bump(this.byKind, request.kind)
    const key = `${request.kind} ${request.route}`
    const perRoute = this.byRoute.get(key) ?? new Map<string, number>()
    bump(perRoute, outcome.label)
    this.byRoute.set(key, perRoute)
    if (request.kind === 'raw') bump(this.rawLabels, `${request.variant} ${outcome.label}`)
    if (this.slowest.length < 5 || ms > this.slowest.at(-1)!.ms)
      this.slowest = [...this.slowest, { ms, index, route: request.route, request: describeCase(request) }]
        .sort((a, b) => b.ms - a.ms)
        .slice(0, 5)
    if (!/^\d/.test(outcome.label)) this.#example(outcome.label, index, request, outcome)
    if (outcome.closeCode !== undefined) {
      bump(this.closeCodes, String(outcome.closeCode))
      this.#example(`ws-close-${outcome.closeCode}`, index, request, outcome)
    }
    for (const finding of outcome.findings ?? []) {
      const seen = this.findings.get(finding)
      if (seen) seen.count++
      else
        this.findings.set(finding, {
          count: 1,
          index,
          request: describeCase(request),
          ...(outcome.answer ? { answer: outcome.answer.slice(0, 500) } : {}),
        })
    }
    if (outcome.violations.length > 0)
      this.violations.push({
        index,
        route: request.route,
        problems: outcome.violations,
        request: describeCase(request),
        ...(outcome.answer ? { answer: outcome.answer.slice(0, 500) } : {}),
      })
    return outcome.violations
  }

  #example(label: string, index: number, request: FuzzCase, outcome: Outcome): void {
    const seen = this.examples.get(label) ?? []
    if (seen.length < EXAMPLES)
      this.examples.set(label, [...seen, { index, answer: outcome.answer, request: describeCase(request) }])
  }

  /** The run in lines: counts by kind and status, per route, raw variants, close codes, findings, slowest cases. */
  lines(): string[] {
    return [
      `by kind: ${JSON.stringify(Object.fromEntries(this.byKind))}`,
      `by status: ${JSON.stringify(Object.fromEntries(sortedEntries(this.counts)))}`,
      ...sortedEntries(this.byRoute).map(
        ([route, labels]) =>
          `  ${route}: ${sortedEntries(labels)
            .map(([l, n]) => `${l}×${n}`)
            .join(' ')}`,
      ),
      `raw requests (variant outcome): ${JSON.stringify(Object.fromEntries(sortedEntries(this.rawLabels)))}`,
      `websocket close codes: ${JSON.stringify(Object.fromEntries(this.closeCodes))}`,
      ...[...this.findings].map(
        ([finding, { count, index }]) => `finding (not asserted): ${finding}, ${count} times (first: case ${index})`,
      ),
      `slowest cases: ${this.slowest.map((c) => `${c.index} (${c.route}) ${c.ms} ms`).join(', ')}`,
    ]
  }

  toJSON(): Record<string, unknown> {
    return {
      violations: this.violations,
      findings: Object.fromEntries(this.findings),
      examples: Object.fromEntries(this.examples),
      slowest: this.slowest,
    }
  }
}
