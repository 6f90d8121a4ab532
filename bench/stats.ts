/** Percentile of a sorted-or-not list of samples (nearest rank). */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]!
}

export interface Rate {
  readonly ops: number
  readonly seconds: number
  readonly perSecond: number
  readonly p50Ms: number
  readonly p99Ms: number
}

/** Runs `op` with `concurrency` loops for `durationMs`, timing each call. */
export async function measure(
  concurrency: number,
  durationMs: number,
  op: (i: number) => Promise<unknown>,
): Promise<Rate> {
  const latencies: number[] = []
  let next = 0
  const started = performance.now()
  const deadline = started + durationMs
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const i = next++
        const t0 = performance.now()
        await op(i)
        latencies.push(performance.now() - t0)
      }
    }),
  )
  const seconds = (performance.now() - started) / 1000
  return {
    ops: latencies.length,
    seconds,
    perSecond: latencies.length / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
  }
}

export const round = (value: number, digits = 1): number => Math.round(value * 10 ** digits) / 10 ** digits
