import { mkdirSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Subscription } from '@nats-io/transport-node'
import type { NatsConnections } from '../../runtime/nats-connection.ts'
import { subjects } from '../../runtime/keys.ts'
import type { Logger } from '../../runtime/logger.ts'
import { InstanceArea } from './instance-area.ts'
import { sweepLeftovers } from './leftovers.ts'

const RUNID = /^[A-Za-z0-9-]{1,64}$/

/**
 * One directory per pipeline run on this instance, shared by the run's steps that run here
 * (`ctx.workspace`), removed when the run ends. Nothing in it crosses machines: a step that runs
 * on another instance gets that instance's directory. Workspaces belong to the process that made
 * them: at start, what dead processes left under the root (run directories, process groups) goes.
 */
export class Workspaces {
  readonly #root: string
  readonly #logger: Logger
  #runEnds: Subscription[] = []

  constructor(root: string, logger: Logger) {
    this.#root = root
    this.#logger = logger
  }

  /**
   * Removes a run's directory when its `run.finished` event goes by (core NATS sees every JetStream
   * publish; `types`: the run ends of these types only, all a limited identity may see), and first clears what dead instances left under the root: wait for it before taking work.
   */
  async start(nats: NatsConnections, types: readonly string[] | undefined): Promise<void> {
    const runEnds = types ? types.map((type) => subjects.runEndsOfType(type)) : [subjects.allRunEnds()]
    this.#runEnds = runEnds.map((subject) => this.#follow(nats, subject))
    await sweepLeftovers(this.#root, this.#logger).catch((failure: unknown) =>
      this.#logger.warn('clearing what dead instances left failed', { root: this.#root, error: String(failure) }),
    )
  }

  #follow(nats: NatsConnections, subject: string): Subscription {
    return nats.nats.subscribe(subject, {
      callback: (error, message) => {
        if (error) return
        try {
          const runid = message.json<{ runid?: string }>().runid
          if (runid && RUNID.test(runid))
            void rm(join(this.#root, runid), { recursive: true, force: true })
              .then(() => InstanceArea.of(this.#root).releaseRun(runid))
              .catch((failure: unknown) =>
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
    const create = (): string => {
      // Claimed first: a sweep that sees the directory also sees the claim.
      InstanceArea.of(this.#root).claimRun(runid)
      mkdirSync(path, { recursive: true })
      return path
    }
    return { path, create }
  }

  close(): void {
    for (const subscription of this.#runEnds) subscription.unsubscribe()
  }
}
