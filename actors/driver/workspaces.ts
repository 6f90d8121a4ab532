import { mkdirSync } from 'node:fs'
import { rm } from 'node:fs/promises'
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
          if (runid && RUNID.test(runid))
            void rm(join(this.#root, runid), { recursive: true, force: true }).catch((failure: unknown) =>
              this.#logger.warn('removing a workspace failed', { runid, error: String(failure) }),
            )
        } catch {
          // not an event
        }
      },
    })
  }

  /** The run's directory; `create()` makes it (drivers that never look at it leave no directory behind). */
  of(runid: string): { readonly path: string; create(): string } {
    if (!RUNID.test(runid)) throw new TypeError(`not a run id: ${runid}`)
    const path = join(this.#root, runid)
    return { path, create: () => (mkdirSync(path, { recursive: true }), path) }
  }

  close(): void {
    this.#runEnds?.unsubscribe()
  }
}
