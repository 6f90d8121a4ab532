/** Runs `stop` on the first SIGINT/SIGTERM; a second signal exits at once. Resolves with the exit code. */
export function untilSignal(
  stop: () => Promise<void>,
  onFatal?: (listen: (reason: string) => void) => void,
  /** How long stopping may take before the process exits anyway (non-zero). */
  graceMs = 4500,
): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false
    const shutdown = (code: number): void => {
      if (stopping) {
        process.exit(code || 130)
      }
      stopping = true
      const force = setTimeout(() => {
        process.stderr.write(`conveyor: stopping took over ${graceMs / 1000} s; exiting anyway\n`)
        process.exit(code || 1)
      }, graceMs)
      force.unref()
      void stop()
        .catch((error) => process.stderr.write(`error while stopping: ${String(error)}\n`))
        .finally(() => resolve(code))
    }
    process.on('SIGINT', () => shutdown(0))
    process.on('SIGTERM', () => shutdown(0))
    onFatal?.((reason) => {
      if (stopping) return
      process.stderr.write(`conveyor: ${reason}; stopping everything\n`)
      shutdown(1)
    })
  })
}
