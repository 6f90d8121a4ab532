import { spawn, type ChildProcess } from 'node:child_process'
import { setTimeout as delay } from 'node:timers/promises'
import { ConveyorError } from '../errors.ts'

export interface ChildSpec {
  /** Human name used in messages, e.g. `nats-server`. */
  readonly name: string
  readonly command: string
  readonly args: readonly string[]
  /** Debian package that provides `command`, named in the missing-binary message. */
  readonly debianPackage: string
  /** Resolves true once the server answers. */
  readonly ready: () => Promise<boolean>
  readonly readyTimeoutMs: number
}

/** A supervised server process: started, awaited until it answers, stopped on request. */
export class SupervisedChild {
  readonly #spec: ChildSpec
  readonly #process: ChildProcess
  readonly #exited: Promise<number | null>
  #stopping = false
  #output = ''
  /** Called once if the process dies without being asked to stop; nothing restarts it silently. */
  onUnexpectedExit: (code: number | null, output: string) => void = () => {}

  private constructor(spec: ChildSpec, child: ChildProcess, exited: Promise<number | null>) {
    this.#spec = spec
    this.#process = child
    this.#exited = exited
    const keep = (chunk: Buffer): void => {
      this.#output = (this.#output + chunk.toString()).slice(-8192)
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    void exited.then((code) => {
      if (!this.#stopping) this.onUnexpectedExit(code, this.#output)
    })
  }

  get pid(): number | undefined {
    return this.#process.pid
  }

  get output(): string {
    return this.#output
  }

  static async start(spec: ChildSpec): Promise<SupervisedChild> {
    // Own process group: a terminal's Ctrl-C reaches only us, and we stop servers after the roles
    // that use them. The exit hook still kills them if this process dies some other way.
    const child = spawn(spec.command, spec.args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    const killOnExit = (): void => {
      child.kill('SIGKILL')
    }
    process.once('exit', killOnExit)
    child.once('exit', () => process.removeListener('exit', killOnExit))
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve())
      child.once('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') {
          reject(
            new ConveyorError(
              'server-binary-missing',
              `${spec.command} not found: install the Debian package ${spec.debianPackage} (apt-get install -y ${spec.debianPackage})`,
            ),
          )
        } else reject(error)
      })
    })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    await spawned
    const supervised = new SupervisedChild(spec, child, exited)
    await supervised.#waitReady()
    return supervised
  }

  async #waitReady(): Promise<void> {
    const deadline = Date.now() + this.#spec.readyTimeoutMs
    let exitCode: number | null | undefined
    void this.#exited.then((code) => {
      exitCode = code
    })
    while (Date.now() < deadline) {
      if (exitCode !== undefined) break
      if (await this.#spec.ready().catch(() => false)) return
      await delay(50)
    }
    await this.stop()
    const why =
      exitCode !== undefined ? `exited with code ${exitCode}` : `did not answer within ${this.#spec.readyTimeoutMs} ms`
    throw new ConveyorError(
      'server-start-failed',
      `${this.#spec.name} ${why}:\n${this.#output.trim().split('\n').slice(-10).join('\n')}`,
    )
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Harmless when already stopped. */
  async stop(graceMs = 3000): Promise<void> {
    this.#stopping = true
    if (this.#process.exitCode !== null || this.#process.signalCode !== null) return
    this.#process.kill('SIGTERM')
    const timer = setTimeout(() => this.#process.kill('SIGKILL'), graceMs)
    await this.#exited
    clearTimeout(timer)
  }

  /** Kills the process at once, as a crash would. */
  async kill(): Promise<void> {
    this.#stopping = true
    if (this.#process.exitCode !== null || this.#process.signalCode !== null) return
    this.#process.kill('SIGKILL')
    await this.#exited
  }
}

export async function httpOk(url: string, expect?: (body: string) => boolean): Promise<boolean> {
  const response = await fetch(url, { signal: AbortSignal.timeout(1000) })
  if (!response.ok) return false
  const body = await response.text()
  return expect ? expect(body) : true
}

/** A supervised child that can be started again on the same spec (ports, store) after a kill or a stop. */
export interface RestartableChild {
  /** The current process (a new one after `restart`). */
  readonly child: SupervisedChild
  stop(): Promise<void>
  restart(): Promise<void>
}

/** Starts `spec` as a {@link RestartableChild}. */
export async function startRestartable(spec: ChildSpec): Promise<RestartableChild> {
  let child = await SupervisedChild.start(spec)
  return {
    get child() {
      return child
    },
    stop: () => child.stop(),
    restart: async () => {
      await child.stop()
      child = await SupervisedChild.start(spec)
    },
  }
}
