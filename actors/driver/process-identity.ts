import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { hostname } from 'node:os'

/**
 * A process as it can be recognised later: a pid alone may have been given to another process
 * since, so the process's start time goes with it (and the host and boot it ran on).
 */
export interface ProcessIdentity {
  readonly host: string
  /** The kernel's boot id ('' where the system does not say). */
  readonly boot: string
  readonly pid: number
  readonly start: string
}

const safeName = (text: string): string => text.replace(/[^A-Za-z0-9.-]/g, '-') || 'host'

const bootId = ((): string => {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return ''
  }
})()

/** This host as identities name it. */
export const thisHost = (): { host: string; boot: string } => ({ host: safeName(hostname()), boot: bootId })

/**
 * When process `pid` started (clock ticks since boot from `/proc`, else what `ps` says); undefined
 * when there is no such process. A zombie has one too: its pid is not free until it is reaped.
 */
export function processStart(pid: number): string | undefined {
  const stat = procStat(pid)
  if (stat) return stat.start
  if (hasProc()) return undefined
  try {
    const started = execFileSync('ps', ['-o', 'lstart=', '-p', String(pid)], { encoding: 'utf8' }).trim()
    return started ? started.replace(/\s+/g, '_') : undefined
  } catch {
    return undefined
  }
}

/** The identity of process `pid` now, or undefined when it is not running. */
export function identityOf(pid: number): ProcessIdentity | undefined {
  const start = processStart(pid)
  return start === undefined ? undefined : { ...thisHost(), pid, start }
}

/** Whether the process `identity` names still runs: one of another boot never does, one of another host is assumed to. */
export function stillRuns(identity: ProcessIdentity): boolean {
  const here = thisHost()
  if (identity.host !== here.host) return true
  if (identity.boot !== here.boot) return false
  return processStart(identity.pid) === identity.start && !procStat(identity.pid)?.zombie
}

/** Pids of the processes in group `pgid` (from `/proc`; empty where there is none). */
export function groupMembers(pgid: number): number[] {
  if (!hasProc()) return []
  const members: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = procStat(Number(entry))
    if (stat?.pgrp === pgid && !stat.zombie) members.push(Number(entry))
  }
  return members
}

/** The environment process `pid` started with, as `NAME=value` strings (empty when it cannot be read). */
export function environmentOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')
  } catch {
    return []
  }
}

let procMounted: boolean | undefined
const hasProc = (): boolean => (procMounted ??= procStat(process.pid) !== undefined)

/** Fields of `/proc/<pid>/stat` (see proc(5)). */
function procStat(pid: number): { pgrp: number; start: string; zombie: boolean } | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name (field 2) is in parentheses and may hold anything: count from the last one.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const [state, , pgrp] = fields
  const start = fields[19]
  if (state === undefined || pgrp === undefined || start === undefined) return undefined
  return { pgrp: Number(pgrp), start, zombie: state === 'Z' || state === 'X' }
}
