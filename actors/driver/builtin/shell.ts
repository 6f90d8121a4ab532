import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { readFile, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { inheritedPath } from '../../../runtime/config.ts'
import { defineDriver } from '../define.ts'
import { TerminalError } from '../errors.ts'
import { InstanceArea } from '../instance-area.ts'
import { processStart } from '../process-identity.ts'
import type { DriverContext, DriverResult } from '../types.ts'
import { stepInputs, writeStepInputs } from './step-inputs.ts'

/** How long a process group gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 2000

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

const tooBig = (error: unknown): TerminalError | undefined =>
  (error as NodeJS.ErrnoException | undefined)?.code === 'E2BIG'
    ? new TerminalError(
        "the step's environment is too big to start a command (E2BIG): keep the step's env values small",
      )
    : undefined

/** Runs one command with `sh -c` in its own process group; resolves with its exit code (or the signal that ended it). */
function runCommand(
  command: string,
  options: {
    cwd: string
    env: Record<string, string>
    signal: AbortSignal
    /** Returns a promise while the log is full: reading the command's output pauses until it resolves. */
    output: (stream: string, line: string) => Promise<void> | undefined
    /** Called as soon as the group exists; what it returns is called when the group is gone. */
    started: (pgid: number) => () => void
  },
): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve, reject) => {
    let child: ChildProcessByStdio<null, Readable, Readable>
    try {
      child = spawn('/bin/sh', ['-c', command], {
        cwd: options.cwd,
        env: options.env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    } catch (error) {
      reject(tooBig(error) ?? error)
      return
    }
    let forget = (): void => {}
    if (child.pid !== undefined) forget = options.started(child.pid)
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
    /** Readers paused until the log has room: their pipes still hold output. */
    let waitingForLog = 0
    const pending = [child.stdout, child.stderr].map(
      (stream, i) =>
        new Promise<void>((done) => {
          const lines = createInterface({ input: stream, crlfDelay: Infinity })
          lines.on('line', (line) => {
            const room = options.output(i === 0 ? 'stdout' : 'stderr', line)
            if (room === undefined) return
            lines.pause()
            waitingForLog++
            void room.then(() => (waitingForLog--, lines.resume()))
          })
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
      forget()
      cleanUp()
      reject(tooBig(error) ?? error)
    })
    child.once('exit', (code, signal) => {
      // Whatever the command left running in its group goes with it. A process that left the
      // group (setsid) may still hold the pipes: they are closed after a grace period (counted
      // from when the log last made the readers wait, so output already in the pipes is kept).
      group('SIGKILL')
      forget()
      const closeOrphaned = (): void => {
        if (waitingForLog > 0) {
          orphaned = setTimeout(closeOrphaned, KILL_GRACE_MS)
          return
        }
        child.stdout?.destroy()
        child.stderr?.destroy()
      }
      let orphaned = setTimeout(closeOrphaned, KILL_GRACE_MS)
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
    const step = ctx.step
    const area = InstanceArea.of(dirname(workspace))
    const inputsDirectory = await area.stepDirectory()
    try {
      const inputs = stepInputs(ctx.resource.spec, ctx.steps, inputsDirectory.path)
      await writeStepInputs(inputs)
      const outputFile = join(workspace, `.conveyor-output-${step.id}`)
      const env: Record<string, string> = {
        PATH: inheritedPath(),
        HOME: workspace,
        LANG: 'C.UTF-8',
        ...inputs.env,
        ...step.env,
        CONVEYOR_WORKSPACE: workspace,
        CONVEYOR_RUNID: ctx.runid,
        CONVEYOR_STEP: step.id,
        CONVEYOR_ATTEMPT: String(ctx.attempt),
        CONVEYOR_RESOURCE: ctx.resource.name,
        CONVEYOR_RESOURCE_TYPE: ctx.resource.resource,
        CONVEYOR_OUTPUT: outputFile,
      }
      // What a later instance checks before it kills a group this process left behind.
      const marks = ['CONVEYOR_RUNID', 'CONVEYOR_STEP', 'CONVEYOR_ATTEMPT'].map((name) => `${name}=${env[name]}`)
      const started = (pgid: number): (() => void) => {
        const start = processStart(pgid)
        try {
          if (start !== undefined) return area.recordGroup({ pgid, start, marks })
        } catch (error) {
          ctx.log(`could not record process group ${pgid}: it is not killed if this driver dies (${String(error)})`)
        }
        return () => {}
      }
      await rm(outputFile, { force: true })
      for (const [index, command] of commands.entries()) {
        ctx.log(`$ ${command}`)
        const { code, signal } = await runCommand(command, {
          cwd: workspace,
          env,
          signal: ctx.signal,
          output: ctx.output,
          started,
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
    } finally {
      await inputsDirectory.remove()
    }
  },
})
