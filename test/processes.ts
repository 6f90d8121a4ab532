import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const CLI = fileURLToPath(new URL('../cli/bin.js', import.meta.url))

/** A `conveyor` CLI process with its output captured, for tests that need a real separate process. */
export class ConveyorProcess {
  readonly child: ChildProcess
  #output = ''
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>

  constructor(args: readonly string[], env: Record<string, string | undefined> = {}) {
    this.child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.child.stdout!.on('data', (chunk: Buffer) => (this.#output += chunk.toString()))
    this.child.stderr!.on('data', (chunk: Buffer) => (this.#output += chunk.toString()))
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })))
  }

  get output(): string {
    return this.#output
  }

  /** Resolves with the first match of `pattern` in the output; rejects when the process exits first or time runs out. */
  async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs
    let exited = false
    void this.exited.then(() => (exited = true))
    for (;;) {
      const match = this.#output.match(pattern)
      if (match) return match
      if (exited) throw new Error(`process exited before printing ${pattern}:\n${this.#output}`)
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}:\n${this.#output}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal)
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
