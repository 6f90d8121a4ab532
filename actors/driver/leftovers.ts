import { readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import type { Logger } from '../../runtime/logger.ts'
import { AREAS, parseAreaName, type GroupRecord } from './instance-area.ts'
import { environmentOf, groupMembers, identityOf, processStart, stillRuns, thisHost } from './process-identity.ts'

const RUNID = /^[A-Za-z0-9-]{1,64}$/
/** How long killed groups get to be gone before their workspaces are removed. */
const KILL_WAIT_MS = 5000

/** What a sweep found and did. */
export interface Sweep {
  /** Process groups of dead instances that still ran, now killed. */
  readonly killed: number
  /** Run directories no running instance used, now removed. */
  readonly removed: readonly string[]
}

/**
 * Clears what dead instances left under a workspace root: kills the process groups their steps
 * were running (recognised by the leader's start time, or the group's environment when the leader
 * is gone), then removes every run directory no live process on this host has claimed. Areas of
 * other hosts are left alone (their processes cannot be seen from here) and their claims kept.
 */
export async function sweepLeftovers(root: string, logger: Logger): Promise<Sweep> {
  if (!identityOf(process.pid)) {
    logger.warn('cannot tell processes apart on this system: leftovers of dead instances are not cleared', { root })
    return { killed: 0, removed: [] }
  }
  // Directories first, claims second: a live process claims a run before it makes its directory.
  const runs = (await readdir(root, { withFileTypes: true }).catch(() => []))
    .filter((entry) => entry.isDirectory() && RUNID.test(entry.name))
    .map((entry) => entry.name)
  const claimed = new Set<string>()
  const killed: number[] = []
  const here = thisHost()
  for (const name of await readdir(join(root, AREAS)).catch(() => [] as string[])) {
    const owner = parseAreaName(name)
    if (!owner) continue
    const area = join(root, AREAS, name)
    if (owner.host !== here.host || stillRuns(owner)) {
      for (const runid of await readdir(join(area, 'runs')).catch(() => [] as string[])) claimed.add(runid)
      continue
    }
    if (owner.boot === here.boot)
      for (const record of await groupRecords(area))
        if (killGroup(record)) {
          killed.push(record.pgid)
          logger.warn('killed a process group a dead instance left running', { pgid: record.pgid, marks: record.marks })
        }
    await rm(area, { recursive: true, force: true })
  }
  await untilGone(killed)
  const removed = runs.filter((runid) => !claimed.has(runid))
  for (const runid of removed) await rm(join(root, runid), { recursive: true, force: true })
  if (removed.length > 0) logger.info('removed workspaces no running instance uses', { root, runs: removed.length })
  return { killed: killed.length, removed }
}

async function groupRecords(area: string): Promise<GroupRecord[]> {
  const records: GroupRecord[] = []
  for (const file of await readdir(join(area, 'groups')).catch(() => [] as string[])) {
    try {
      const record = JSON.parse(await readFile(join(area, 'groups', file), 'utf8')) as GroupRecord
      if (
        Number.isInteger(record.pgid) &&
        record.pgid > 1 &&
        typeof record.start === 'string' &&
        Array.isArray(record.marks) &&
        record.marks.length > 0
      )
        records.push(record)
    } catch {
      // cut short by the crash: nothing to go by
    }
  }
  return records
}

/**
 * SIGKILLs the group when it is still the recorded one. A group's id is not given to another
 * process while the group has members (POSIX), so: the leader with its recorded start time, or
 * no leader and members that carry the group's environment.
 */
function killGroup(record: GroupRecord): boolean {
  const leader = processStart(record.pgid)
  if (leader !== undefined && leader !== record.start) return false
  if (
    leader === undefined &&
    !groupMembers(record.pgid).some((pid) => {
      const environment = environmentOf(pid)
      return record.marks.every((mark) => environment.includes(mark))
    })
  )
    return false
  try {
    process.kill(-record.pgid, 'SIGKILL')
    return true
  } catch {
    return false
  }
}

async function untilGone(groups: readonly number[]): Promise<void> {
  const deadline = Date.now() + KILL_WAIT_MS
  while (groups.some((pgid) => groupMembers(pgid).length > 0) && Date.now() < deadline) await delay(20)
}
