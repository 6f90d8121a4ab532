import { testSwitches } from './config.ts'

/**
 * Fault points for crash tests, switched on with `CONVEYOR_TEST_FAULT=<point>` in a child process.
 * A fault point kills the process with SIGKILL, exactly as a power cut would.
 */
export type FaultPoint = 'crash-after-commit'

export function faultPoint(point: FaultPoint): void {
  if (testSwitches.fault() === point) process.kill(process.pid, 'SIGKILL')
}

/**
 * In-process fault hooks for tests. `afterActorCommit` runs after an actor's transaction
 * committed and before anything else happens; throwing from it is an ambiguous commit (the write
 * is durable, the writer saw an error), as a deadline that expires on the way back would be.
 */
export const faultHooks: { afterActorCommit: ((subjects: readonly string[]) => void) | undefined } = {
  afterActorCommit: undefined,
}
