/**
 * Fault points for crash tests, switched on with `CONVEYOR_TEST_FAULT=<point>` in a child process.
 * A fault point kills the process with SIGKILL, exactly as a power cut would.
 */
export type FaultPoint = 'crash-after-commit'

export function faultPoint(point: FaultPoint): void {
  if (process.env.CONVEYOR_TEST_FAULT === point) process.kill(process.pid, 'SIGKILL')
}
