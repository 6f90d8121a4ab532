import v8 from 'node:v8'
import vm from 'node:vm'

/**
 * Keeps a long-running worker's heap near what it actually uses. V8 sizes its heap for the
 * machine (gigabytes here) and collects lazily, so RSS drifts far above the live set under a
 * steady stream of short-lived objects. Past `softLimitMb` of old space, a full collection runs (at
 * most once per interval); nothing fails when the limit is exceeded.
 */
export function boundHeap(softLimitMb: number, intervalMs = 250): () => void {
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as (() => void) | undefined
  if (typeof gc !== 'function') return () => {}
  const limit = softLimitMb * 1024 * 1024
  // Young objects are collected cheaply and often by V8 itself; what piles up is the old space.
  const settled = (): number =>
    v8
      .getHeapSpaceStatistics()
      .reduce((total, space) => (space.space_name === 'new_space' ? total : total + space.space_used_size), 0)
  const timer = setInterval(() => {
    if (settled() > limit) gc()
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}
