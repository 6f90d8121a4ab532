import { startStack, api } from '../test/harness.ts'
import { defineDriver, runDriver } from '../index.ts'
import { createLogger } from '../runtime/logger.ts'

const stack = await startStack({ worker: true })
const quiet = createLogger('x', 'error')
const t = () => performance.now()
const marks: Record<string, Record<string, number>> = {}
const mark = (run: string, what: string) => ((marks[run] ??= {})[what] ??= t())
const STEPS = ['one', 'two', 'three']
for (const [i, name] of STEPS.entries()) {
  await runDriver(defineDriver({ name, resources: [], concurrency: 32, reconcile: (ctx) => { mark(ctx.resource.name, `called-${i}`); queueMicrotask(() => mark(ctx.resource.name, `returned-${i}`)); return { success: true } } }), { connections: stack.connections, logger: quiet })
}
stack.connections.nats.subscribe('conveyor.in.>', { callback: (_e, m) => { const b = m.json<any>(); const name = m.subject.split('.')[4]!; mark(name, `${b.type}-${b.work?.step ?? ''}`) } })
stack.connections.nats.subscribe('conveyor.ev.step.>', { callback: (_e, m) => { const b = m.json<any>(); mark(b.name, `dispatched-${b.step.id}`) } })
await api(stack.url, 'POST', '/resource-definitions', { name: 'b', version: '1', schema: { type: 'object' } })
await api(stack.url, 'POST', '/pipelines', { name: 'p', resource: 'b', steps: STEPS.map((d, i) => ({ id: `s${i}`, driver: d })) })
for (let i = 0; i < 200; i++) {
  const name = `r${i}`
  mark(name, 'create')
  void api(stack.url, 'POST', '/resources', { name, resource: 'b', pipeline: 'p', spec: {} })
  await new Promise((r) => setTimeout(r, 20))
}
await new Promise((r) => setTimeout(r, 2000))
const phases: Record<string, number[]> = {}
for (const m of Object.values(marks)) {
  for (let i = 1; i < 3; i++) {
    const seq = [`returned-${i - 1}`, `conveyor.report-s${i - 1}`, `dispatched-s${i}`, `conveyor.claim-s${i}`, `called-${i}`]
    for (let k = 1; k < seq.length; k++) {
      const a = m[seq[k - 1]!], b = m[seq[k]!]
      if (a !== undefined && b !== undefined) (phases[`${seq[k - 1]} → ${seq[k]}`] ??= []).push(b - a)
    }
  }
}
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor((p / 100) * (xs.length - 1))]!.toFixed(2)
for (const [k, v] of Object.entries(phases)) console.log(k.padEnd(50), 'p50', pct(v, 50), 'p99', pct(v, 99), 'n', v.length)
await stack.close()
process.exit(0)
