import { afterAll, describe, expect, it } from 'vitest'
import { mkdtemp, mkdir, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { ConveyorProcess, isAlive } from './processes.ts'
import { api, eventually } from './harness.ts'

const dirs: string[] = []
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})

const childPids = (pid: number): number[] => {
  try {
    return execFileSync('pgrep', ['-P', String(pid), '-a'])
      .toString()
      .trim()
      .split('\n')
      .filter((line) => /\s(nats-server|etcd)\s/.test(line))
      .map((line) => Number(line.split(' ')[0]))
  } catch {
    return []
  }
}

async function startUp(dataDir: string): Promise<{ process: ConveyorProcess; url: string; servers: number[] }> {
  const up = new ConveyorProcess(['up', '--port', '0', '--nats-port', '0', '--etcd-port', '0'], {
    CONVEYOR_DATA_DIR: dataDir,
    CONVEYOR_LOG_LEVEL: 'error',
  })
  const [, url] = await up.waitFor(/API:\s+(http:\/\/\S+)/)
  return { process: up, url: url!, servers: childPids(up.child.pid!) }
}

describe('conveyor up', () => {
  it('runs etcd, NATS and the gateway, stops on SIGINT within 5 s leaving no child, and keeps data across restarts', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'conveyor-up-'))
    dirs.push(dataDir)
    const first = await startUp(dataDir)
    expect(first.servers.length).toBe(2)
    expect((await api(first.url, 'GET', '/ready')).status).toBe(200)
    const created = await api(first.url, 'POST', '/resource-definitions/', {
      name: 'kept',
      version: '1',
      schema: { type: 'object' },
    })
    expect(created.status).toBe(201)

    const stoppedAt = Date.now()
    first.process.kill('SIGINT')
    const exit = await first.process.exited
    expect(Date.now() - stoppedAt).toBeLessThan(5000)
    expect(exit.code).toBe(0)
    for (const pid of first.servers)
      await eventually(() => (isAlive(pid) ? undefined : true), `server ${pid} to exit`, 2000)

    const second = await startUp(dataDir)
    try {
      const kept = await api(second.url, 'GET', '/resource-definitions/kept')
      expect(kept.status).toBe(200)
      expect(kept.body.metadata.uid).toBe(created.body.metadata.uid)
    } finally {
      second.process.kill('SIGTERM')
      expect((await second.process.exited).code).toBe(0)
    }
  })

  it('names the Debian package when a server binary is missing', async () => {
    const bin = await mkdtemp(join(tmpdir(), 'conveyor-path-'))
    dirs.push(bin)
    await mkdir(join(bin, 'bin'))
    await symlink(process.execPath, join(bin, 'bin', 'node'))
    const up = new ConveyorProcess(['up', '--port', '0', '--nats-port', '0', '--etcd-port', '0'], {
      PATH: join(bin, 'bin'),
      CONVEYOR_DATA_DIR: join(bin, 'data'),
    })
    const exit = await up.exited
    expect(exit.code).toBe(1)
    expect(up.output).toMatch(
      /nats-server not found: install the Debian package nats-server|etcd not found: install the Debian package etcd-server/,
    )
    expect(up.output.trim().split('\n')).toHaveLength(1)
  })

  it('exits with one clear line when external servers cannot be reached', async () => {
    const gateway = new ConveyorProcess(['gateway', '--port', '0'], {
      CONVEYOR_NATS_URL: 'nats://127.0.0.1:1',
      CONVEYOR_ETCD_ENDPOINTS: 'http://127.0.0.1:1',
      CONVEYOR_DATA_DIR: join(tmpdir(), 'unused'),
    })
    const exit = await gateway.exited
    expect(exit.code).toBe(1)
    expect(gateway.output.trim()).toMatch(/^conveyor: cannot reach (etcd|NATS) at /)
    expect(gateway.output.trim().split('\n')).toHaveLength(1)
  })
})
