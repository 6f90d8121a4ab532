import { expect } from 'vitest'
import type { ScenarioResult } from './scenario.ts'

/** The promises every fault suite checks: nothing lost, nothing doubled, nothing stuck, no broken API answer. */
export function expectInvariants({ figures, breaches }: ScenarioResult): void {
  expect.soft(figures.lost, 'lost').toEqual({ resources: 0, transitions: 0, logLines: 0, watchRevisions: 0 })
  expect.soft(figures.doubled, 'doubled').toEqual({ transitions: 0, stepsRunAfterCompletion: 0, watchRevisions: 0 })
  expect.soft(figures.stuck, 'stuck').toEqual({ runs: 0 })
  expect.soft(figures.failedRuns, 'failed runs').toBe(0)
  expect.soft(figures.api['5xx'], 'API 5xx other than 503').toBe(0)
  expect.soft(figures.api.hangs, 'API hangs').toBe(0)
  expect.soft(figures.api['503WithoutRetryAfter'], 'API 503 without Retry-After').toBe(0)
  expect(breaches.map((breach) => `${breach.invariant}: ${breach.subject}`)).toEqual([])
}
