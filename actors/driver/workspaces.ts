import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Subscription } from '@nats-io/transport-node'
import type { NatsConnections } from '../../runtime/nats-connection.ts'
import { subjects } from '../../runtime/keys.ts'
import type { Logger } from '../../runtime/logger.ts'

const RUNID = /^[A-Za-z0-9-]{1,64}$/

/**
 * One directory per pipeline run on this instance, shared by the run's steps that run here
 * (`ctx.workspace`), removed when the run ends. Nothing in it crosses machines: a step that runs
 * on another instance gets that instance's directory.
 */
export class Workspaces {
  readonly #root: string
  readonly #logger: Logger
  #runEnds: Subscription | undefined

  constructor(root: string, logger: Logger) {
    this.#root = root
    this.#logger = logger
  }

  /** Removes a run's directory when its `run.finished` event goes by (core NATS sees every JetStream publish). */
  start(nats: NatsConnections): void {
    this.#runEnds = nats.nats.subscribe(subjects.allRunEnds(), {
      callback: (error, message) => {
        if (error) return
        try {
          const runid = message.json<{ runid?: string }>().runid
          if (runid && RUNID.test(runid)) void rm(join(this.#root, runid), { recursive: true, force: true }).catch((failure: unknown) => this.#logger.warn('removing a workspace failed', { runid, error: String(failure) }))
        } catch {
          // not an event
        }
      },
    })
  }

  /** The run's directory, created if needed. */
  async of(runid: string): Promise<string> {
    if (!RUNID.test(runid)) throw new TypeError(`not a run id: ${runid}`)
    const dir = join(this.#root, runid)
    await mkdir(dir, { recursive: true })
    return dir
  }

  close(): void {
    this.#runEnds?.unsubscribe()
  }
}
