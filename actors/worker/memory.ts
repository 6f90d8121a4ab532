import v8 from 'node:v8'
import vm from 'node:vm'

/**
 * Keeps a long-running worker's heap near what it actually uses. V8 sizes its heap for the
 * machine (gigabytes here) and collects lazily, so RSS drifts far above the live set under a
 * steady stream of short-lived objects. Past `softLimitMb` of heap, a full collection runs (at
 * most once per interval); nothing fails when the limit is exceeded.
 */
export function boundHeap(softLimitMb: number, intervalMs = 1000): () => void {
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as (() => void) | undefined
  if (typeof gc !== 'function') return () => {}
  const timer = setInterval(() => {
    if (process.memoryUsage().heapUsed > softLimitMb * 1024 * 1024) gc()
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}
