import { describe, expect, it } from 'vitest'
import { ownerOf } from '../actors/worker/ownership.ts'
import { PARTITIONS } from '../runtime/keys.ts'

describe('rendezvous ownership', () => {
  it('spreads partitions over similar worker ids, and a join moves only the newcomer\u2019s share', () => {
    for (let trial = 0; trial < 300; trial++) {
      const workers = [0, 1, 2].map((i) => `worker-${(trial * 3 + i).toString(16).padStart(8, '0')}`)
      const counts = new Map(workers.map((w) => [w, 0]))
      for (let p = 0; p < PARTITIONS; p++) counts.set(ownerOf(p, workers)!, counts.get(ownerOf(p, workers)!)! + 1)
      expect(Math.min(...counts.values())).toBeGreaterThanOrEqual(8)
      const joined = [...workers, `worker-new-${trial}`]
      for (let p = 0; p < PARTITIONS; p++) {
        const after = ownerOf(p, joined)
        if (after !== joined[3]) expect(after).toBe(ownerOf(p, workers))
      }
    }
  })
})
