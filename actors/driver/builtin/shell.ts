import { spawn } from 'node:child_process'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { inheritedPath } from '../../../runtime/config.ts'
import { defineDriver } from '../define.ts'
import { TerminalError } from '../errors.ts'
import type { DriverContext, DriverResult } from '../types.ts'

/** How long a process group gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 2000

/**
 * Spec values as environment variables, never as shell text: `spec.repoUrl` becomes
 * `SPEC_REPOURL` (strings as they are, other values as JSON), the whole spec `CONVEYOR_SPEC`.
 */
export function specEnvironment(spec: Readonly<Record<string, unknown>>): Record<string, string> {
  const clean = (value: string): string => value.replace(/\0/g, '')
  const env: Record<string, string> = { CONVEYOR_SPEC: clean(JSON.stringify(spec)) }
  for (const [key, value] of Object.entries(spec)) {
    const name = `SPEC_${envName(key)}`
    env[name] = clean(typeof value === 'string' ? value : JSON.stringify(value))
  }
  return env
}

const envName = (text: string): string => text.toUpperCase().replace(/[^A-Z0-9_]/g, '_')

/**
 * What earlier steps of the run returned, as environment variables: `data.commit` of step
 * `clone` becomes `STEP_CLONE_COMMIT` (strings as they are, other values as JSON), and all of it
 * `CONVEYOR_STEPS` (JSON by step id).
 */
export function stepsEnvironment(
  steps: Readonly<Record<string, Readonly<Record<string, unknown>>>>,
): Record<string, string> {
  const clean = (value: string): string => value.replace(/\0/g, '')
  const env: Record<string, string> = { CONVEYOR_STEPS: clean(JSON.stringify(steps)) }
  for (const [step, data] of Object.entries(steps)) {
    for (const [key, value] of Object.entries(data))
      env[`STEP_${envName(step)}_${envName(key)}`] = clean(typeof value === 'string' ? value : JSON.stringify(value))
  }
  return env
}

/** Most of a step's outputs kept in its `data` (they travel in the actor record). */
const MAX_OUTPUTS = 64
const MAX_OUTPUT_BYTES = 4096

/**
 * `key=value` lines a step's commands appended to `$CONVEYOR_OUTPUT`, as its `data` (as GitHub
 * Actions' `$GITHUB_OUTPUT`): later steps get them as `STEP_<ID>_<KEY>`.
 */
async function readOutputs(file: string): Promise<Record<string, string>> {
  const text = await readFile(file, 'utf8').catch(() => '')
  const outputs: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const at = line.indexOf('=')
    if (at <= 0 || Object.keys(outputs).length >= MAX_OUTPUTS) continue
    const key = line.slice(0, at).trim()
    if (/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(key)) outputs[key] = line.slice(at + 1).slice(0, MAX_OUTPUT_BYTES)
  }
  await rm(file, { force: true })
  return outputs
}

/** Runs one command with `sh -c` in its own process group; resolves with its exit code (or the signal that ended it). */
function runCommand(
  command: string,
  options: {
    cwd: string
    env: Record<string, string>
    signal: AbortSignal
    output: (stream: string, line: string) => void
  },
): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const group = (signal: NodeJS.Signals): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal)
      } catch {
        // the group is gone already
      }
    }
    let killTimer: NodeJS.Timeout | undefined
    const onAbort = (): void => {
      group('SIGTERM')
      killTimer = setTimeout(() => group('SIGKILL'), KILL_GRACE_MS)
    }
    options.signal.addEventListener('abort', onAbort)
    if (options.signal.aborted) onAbort()
    const pending = [child.stdout, child.stderr].map(
      (stream, i) =>
        new Promise<void>((done) => {
          const lines = createInterface({ input: stream, crlfDelay: Infinity })
          lines.on('line', (line) => options.output(i === 0 ? 'stdout' : 'stderr', line))
          lines.on('close', done)
          // A destroyed pipe (see below) closes without ending, which readline does not notice.
          stream.once('close', () => done())
        }),
    )
    const cleanUp = (): void => {
      clearTimeout(killTimer)
      options.signal.removeEventListener('abort', onAbort)
    }
    child.once('error', (error) => {
      cleanUp()
      reject(error)
    })
    child.once('exit', (code, signal) => {
      // Whatever the command left running in its group goes with it. A process that left the
      // group (setsid) may still hold the pipes: they are closed after a grace period.
      group('SIGKILL')
      const orphaned = setTimeout(() => {
        child.stdout?.destroy()
        child.stderr?.destroy()
      }, KILL_GRACE_MS)
      void Promise.all(pending).then(() => {
        clearTimeout(orphaned)
        cleanUp()
        resolve({ code, signal })
      })
    })
  })
}

/**
 * The built-in `shell` driver: runs a pipeline step's `commands` (as stored in the run's plan) one
 * after another in the run's workspace, shared by the run's steps on this instance, with the
 * resource's spec and the earlier steps' data as environment variables, streaming every
 * stdout/stderr line to the run's log. A timeout or a cancel kills the whole process group.
 */
export const shellDriver = defineDriver({
  name: 'shell',
  resources: [],
  concurrency: 4,
  async reconcile(ctx: DriverContext): Promise<DriverResult> {
    const commands = ctx.step?.commands
    const workspace = ctx.workspace
    if (!ctx.step || !commands || commands.length === 0 || !workspace)
      throw new TerminalError('the shell driver runs pipeline steps that list commands')
    const outputFile = join(workspace, `.conveyor-output-${ctx.step.id}`)
    const env: Record<string, string> = {
      PATH: inheritedPath(),
      HOME: workspace,
      LANG: 'C.UTF-8',
      ...specEnvironment(ctx.resource.spec),
      ...stepsEnvironment(ctx.steps),
      ...ctx.step.env,
      CONVEYOR_WORKSPACE: workspace,
      CONVEYOR_RUNID: ctx.runid,
      CONVEYOR_STEP: ctx.step.id,
      CONVEYOR_ATTEMPT: String(ctx.attempt),
      CONVEYOR_RESOURCE: ctx.resource.name,
      CONVEYOR_RESOURCE_TYPE: ctx.resource.resource,
      CONVEYOR_OUTPUT: outputFile,
    }
    await rm(outputFile, { force: true })
    for (const [index, command] of commands.entries()) {
      ctx.log(`$ ${command}`)
      const { code, signal } = await runCommand(command, {
        cwd: workspace,
        env,
        signal: ctx.signal,
        output: ctx.output,
      })
      if (ctx.signal.aborted) throw ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('aborted')
      if (code !== 0) {
        const how = code === null ? `was killed by ${signal}` : `exited with code ${code}`
        return {
          success: false,
          message: `command ${index + 1} of ${commands.length} ${how}`,
          data: { ...(await readOutputs(outputFile)), exitCode: code, signal, command: index },
        }
      }
    }
    return {
      success: true,
      message: `${commands.length} command(s) succeeded`,
      data: { ...(await readOutputs(outputFile)), exitCode: 0 },
    }
  },
})
