import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { identityOf, thisHost, type ProcessIdentity } from './process-identity.ts'

/** What a workspace root keeps beside the run directories (a run id never starts with a dot). */
export const AREAS = '.conveyor'

/** A process group a step started, as recorded so that a later instance can kill it if this process dies. */
export interface GroupRecord {
  /** The group's id: the pid of its leader (the step's `sh`). */
  readonly pgid: number
  /** The leader's start time, so that a recycled pid is never taken for it. */
  readonly start: string
  /** The environment the group started with that names it: `CONVEYOR_RUNID=…`, `CONVEYOR_STEP=…`. */
  readonly marks: readonly string[]
}

/**
 * What one process keeps under a workspace root, in `.conveyor/<host>~<boot>~<pid>~<start>/`: which
 * run directories it uses (`runs/`), the process groups its steps run (`groups/`) and the files it
 * hands to steps (`steps/`). When the process is gone, the next instance to start on that root
 * kills its groups and removes all of it (see `sweepLeftovers`).
 */
export class InstanceArea {
  static readonly #areas = new Map<string, InstanceArea>()

  /** This process's area under `root`. */
  static of(root: string): InstanceArea {
    let area = InstanceArea.#areas.get(root)
    if (!area) InstanceArea.#areas.set(root, (area = new InstanceArea(root)))
    return area
  }

  readonly path: string

  private constructor(root: string) {
    this.path = join(root, AREAS, areaName(identityOf(process.pid) ?? { ...thisHost(), pid: process.pid, start: '0' }))
  }

  /** Records that this process uses run directory `runid`; called before the directory is made. */
  claimRun(runid: string): void {
    mkdirSync(join(this.path, 'runs'), { recursive: true })
    writeFileSync(join(this.path, 'runs', runid), '')
  }

  async releaseRun(runid: string): Promise<void> {
    await rm(join(this.path, 'runs', runid), { force: true })
  }

  /** Records a process group at once (synchronously: a crash right after the spawn must find it); returns what forgets it. */
  recordGroup(record: GroupRecord): () => void {
    const file = join(this.path, 'groups', `${record.pgid}.json`)
    mkdirSync(join(this.path, 'groups'), { recursive: true })
    writeFileSync(file, JSON.stringify(record))
    return () => {
      try {
        rmSync(file, { force: true })
      } catch {
        // left for the sweep after this process ends, which finds the group gone
      }
    }
  }

  /** A new private directory for the files one step execution is handed, with what removes it. */
  async stepDirectory(): Promise<{ readonly path: string; remove(): Promise<void> }> {
    await mkdir(join(this.path, 'steps'), { recursive: true, mode: 0o700 })
    const path = await mkdtemp(join(this.path, 'steps', 'step-'))
    return { path, remove: () => rm(path, { recursive: true, force: true }) }
  }
}

const SEPARATOR = '~'

export const areaName = (identity: ProcessIdentity): string =>
  [identity.host, identity.boot || 'noboot', identity.pid, identity.start].join(SEPARATOR)

/** The process an area's name names, or undefined for a name that is not an area's. */
export function parseAreaName(name: string): ProcessIdentity | undefined {
  const parts = name.split(SEPARATOR)
  if (parts.length !== 4) return undefined
  const [host, boot, pid, start] = parts as [string, string, string, string]
  if (!/^\d+$/.test(pid) || !host || !start) return undefined
  return { host, boot: boot === 'noboot' ? '' : boot, pid: Number(pid), start }
}
