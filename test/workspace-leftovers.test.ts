import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defineDriver, runDriver } from 'conveyor'
import { createLogger } from '../runtime/logger.ts'
import { AREAS, areaName, InstanceArea, type GroupRecord } from '../actors/driver/instance-area.ts'
import { identityOf, thisHost, type ProcessIdentity } from '../actors/driver/process-identity.ts'
import { eventually, startStack, type Stack } from './harness.ts'

let stack: Stack
let dir: string
const children: ChildProcess[] = []

beforeAll(async () => {
  stack = await startStack()
  dir = await mkdtemp(join(tmpdir(), 'conveyor-leftovers-'))
})
afterAll(async () => {
  for (const child of children)
    try {
      process.kill(-child.pid!, 'SIGKILL')
    } catch {
      // gone
    }
  await stack?.close()
  await rm(dir, { recursive: true, force: true })
})

/** A real process in its own group, started with `env`. */
function group(script: string, env: Record<string, string> = {}): ChildProcess {
  const child = spawn('/bin/sh', ['-c', script], {
    cwd: dir,
    detached: true,
    stdio: 'ignore',
    env: { PATH: process.env.PATH!, ...env },
  })
  children.push(child)
  return child
}

const runs = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2))
  } catch {
    return false
  }
}

/** Lays out an area as a process `owner` leaves it: claimed runs (with their directories) and recorded groups. */
function leaveArea(root: string, owner: ProcessIdentity, claims: string[], groups: GroupRecord[] = []): string {
  const area = join(root, AREAS, areaName(owner))
  mkdirSync(join(area, 'runs'), { recursive: true })
  mkdirSync(join(area, 'groups'), { recursive: true })
  for (const runid of claims) {
    writeFileSync(join(area, 'runs', runid), '')
    mkdirSync(join(root, runid), { recursive: true })
    writeFileSync(join(root, runid, 'checkout'), 'work')
  }
  for (const record of groups) writeFileSync(join(area, 'groups', `${record.pgid}.json`), JSON.stringify(record))
  return area
}

const marks = (runid: string): Record<string, string> => ({
  CONVEYOR_RUNID: runid,
  CONVEYOR_STEP: 'build',
  CONVEYOR_ATTEMPT: '1',
})
const markList = (runid: string): string[] => Object.entries(marks(runid)).map(([k, v]) => `${k}=${v}`)

describe('a driver starting on a workspace root', () => {
  it('kills the groups dead instances left and removes the workspaces no running process uses, and nothing else', async () => {
    const root = join(dir, 'workspaces')
    mkdirSync(root, { recursive: true })

    // A process that died: its identity taken while it ran.
    const dead = group('sleep 0.2')
    const deadOwner = identityOf(dead.pid!)!
    await new Promise((resolve) => dead.once('exit', resolve))
    // What it left running: a group with its leader, a group whose leader exited, and a group
    // whose leader exited without the marks (the id might be someone else's: not touched).
    const withLeader = group('exec sleep 60', marks('run-dead-1'))
    const leaderless = group('sleep 60 & echo $! > leaderless.pid', marks('run-dead-1'))
    const unmarked = group('sleep 60 & echo $! > unmarked.pid', { CONVEYOR_RUNID: 'someone-else' })
    const leaderlessStart = identityOf(leaderless.pid!)!.start
    const unmarkedStart = identityOf(unmarked.pid!)!.start
    // A process with a pid the dead one recorded but another start time: a recycled pid.
    const recycled = group('exec sleep 60', marks('run-dead-1'))
    await Promise.all([leaderless, unmarked].map((child) => new Promise((resolve) => child.once('exit', resolve))))
    const deadArea = leaveArea(
      root,
      deadOwner,
      ['run-dead-1', 'run-dead-2'],
      [
        { pgid: withLeader.pid!, start: identityOf(withLeader.pid!)!.start, marks: markList('run-dead-1') },
        { pgid: leaderless.pid!, start: leaderlessStart, marks: markList('run-dead-1') },
        { pgid: unmarked.pid!, start: unmarkedStart, marks: markList('run-dead-1') },
        { pgid: recycled.pid!, start: '1', marks: markList('run-dead-1') },
      ],
    )
    const leaderlessChild = Number(readFileSync(join(dir, 'leaderless.pid'), 'utf8'))
    const unmarkedChild = Number(readFileSync(join(dir, 'unmarked.pid'), 'utf8'))

    // A live process of this host (another instance sharing the root), with a group it runs.
    const live = group('exec sleep 60')
    const liveArea = leaveArea(
      root,
      identityOf(live.pid!)!,
      ['run-live'],
      [{ pgid: live.pid!, start: identityOf(live.pid!)!.start, marks: markList('run-live') }],
    )
    // An instance on another host: nothing here can tell whether it runs.
    const foreign = { host: `not-${thisHost().host}`, boot: 'b', pid: 12345, start: '42' }
    const foreignArea = leaveArea(root, foreign, ['run-foreign'])
    // This process's own run, and a directory nobody claims (left by a crash, or by an older version).
    InstanceArea.of(root).claimRun('run-mine')
    mkdirSync(join(root, 'run-mine'))
    mkdirSync(join(root, 'run-nobody'))
    writeFileSync(join(root, 'run-nobody', 'checkout'), 'work')

    const driver = await runDriver(
      defineDriver({ name: 'leftovers', resources: [], reconcile: () => ({ success: true }) }),
      { connections: stack.connections, logger: createLogger('driver', 'error'), workspaceRoot: root },
    )
    stack.drivers.push(driver)

    // Running: by the time runDriver resolves the dead instance's groups are gone.
    expect(runs(withLeader.pid!)).toBe(false)
    expect(runs(leaderlessChild)).toBe(false)
    expect(runs(unmarkedChild)).toBe(true)
    expect(runs(recycled.pid!)).toBe(true)
    expect(runs(live.pid!)).toBe(true)
    const left = (await readdir(root)).filter((name) => name !== AREAS).sort()
    expect(left).toEqual(['run-foreign', 'run-live', 'run-mine'])
    const areas = await readdir(join(root, AREAS))
    expect(areas).not.toContain(deadArea.split('/').at(-1))
    expect(areas).toEqual(expect.arrayContaining([liveArea, foreignArea].map((area) => area.split('/').at(-1))))

    // Once the live process is gone too, the next start clears what it left.
    live.kill('SIGKILL')
    await eventually(() => (runs(live.pid!) ? undefined : true), 'the live process to end')
    await driver.close()
    const again = await runDriver(
      defineDriver({ name: 'leftovers', resources: [], reconcile: () => ({ success: true }) }),
      { connections: stack.connections, logger: createLogger('driver', 'error'), workspaceRoot: root },
    )
    stack.drivers.push(again)
    expect((await readdir(root)).filter((name) => name !== AREAS).sort()).toEqual(['run-foreign', 'run-mine'])
  })
})
