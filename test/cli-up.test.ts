import { afterAll, describe, expect, it } from 'vitest'
import { mkdtemp, mkdir, readFile, rm, stat, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { createServer, type AddressInfo } from 'node:net'
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

const FREE_PORTS = ['--port', '0', '--nats-port', '0', '--etcd-port', '0']

/** Listens on a port of 127.0.0.1 (0: any free one) until closed. */
async function hold(port = 0): Promise<{ port: number; close: () => Promise<void> }> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ port, host: '127.0.0.1', exclusive: true }, resolve)
  })
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

/** Fixed ports for `up` whose derived ones (NATS monitor = NATS + 4000, etcd peer = etcd + 1) are free too. */
async function fixedPorts(): Promise<string[]> {
  for (;;) {
    const held = [await hold(), await hold(), await hold()]
    const [http, nats, etcd] = held.map((h) => h.port) as [number, number, number]
    for (const h of held) await h.close()
    if (nats + 4000 > 65535 || etcd + 1 > 65535) continue
    const derived = await Promise.all([hold(nats + 4000), hold(etcd + 1)].map((p) => p.catch(() => undefined)))
    for (const h of derived) await h?.close()
    if (derived.every(Boolean))
      return ['--port', String(http), '--nats-port', String(nats), '--etcd-port', String(etcd)]
  }
}

async function startUp(
  dataDir: string,
  ports = FREE_PORTS,
): Promise<{ process: ConveyorProcess; url: string; servers: number[]; token: string }> {
  const up = new ConveyorProcess(['up', ...ports], {
    CONVEYOR_DATA_DIR: dataDir,
    CONVEYOR_LOG_LEVEL: 'error',
  })
  const [, url] = await up.waitFor(/API:\s+(http:\/\/\S+)/)
  await up.waitFor(/auth: admin token (?:written to|in) \S+/)
  const token = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim()
  return { process: up, url: url!, servers: childPids(up.child.pid!), token }
}

describe('conveyor up', () => {
  it('runs etcd, NATS and the gateway, stops on SIGINT within 5 s leaving no child, and keeps data across restarts', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'conveyor-up-'))
    dirs.push(dataDir)
    const first = await startUp(dataDir)
    expect(first.servers.length).toBe(2)
    // Auth is on: the first start made an admin token that only its owner can read.
    expect((await stat(join(dataDir, 'admin.token'))).mode & 0o777).toBe(0o600)
    const bearer = { authorization: `Bearer ${first.token}` }
    // Without a token: /ready says only whether it is ready; anything else is 401.
    const bare = await api(first.url, 'GET', '/ready')
    expect(bare.status).toBe(200)
    expect(bare.body).toEqual({ status: 'ready' })
    expect((await api(first.url, 'GET', '/ready', undefined, bearer)).body.etcd).toBe('ok')
    const refused = await api(first.url, 'POST', '/resource-definitions/', { name: 'kept', schema: { type: 'object' } })
    expect(refused.status).toBe(401)
    expect(refused.headers.get('www-authenticate')).toBe('Bearer realm="conveyor"')
    const created = await api(
      first.url,
      'POST',
      '/resource-definitions/',
      { name: 'kept', version: '1', schema: { type: 'object' } },
      bearer,
    )
    expect(created.status).toBe(201)
    // The CLI finds the token in the data directory when it talks to this instance.
    const history = new ConveyorProcess(['token', 'list', '--api', first.url, '--json'], { CONVEYOR_DATA_DIR: dataDir })
    expect((await history.exited).code).toBe(0)
    expect(JSON.parse(history.output).map((t: { role: string }) => t.role)).toEqual(['admin'])

    const stoppedAt = Date.now()
    first.process.kill('SIGINT')
    const exit = await first.process.exited
    expect(Date.now() - stoppedAt).toBeLessThan(5000)
    expect(exit.code).toBe(0)
    for (const pid of first.servers)
      await eventually(() => (isAlive(pid) ? undefined : true), `server ${pid} to exit`, 2000)

    const second = await startUp(dataDir)
    try {
      // The same token again: it still verifies.
      expect(second.token).toBe(first.token)
      const kept = await api(second.url, 'GET', '/resource-definitions/kept', undefined, {
        authorization: `Bearer ${second.token}`,
      })
      expect(kept.status).toBe(200)
      expect(kept.body.metadata.uid).toBe(created.body.metadata.uid)
    } finally {
      second.process.kill('SIGTERM')
      expect((await second.process.exited).code).toBe(0)
    }
  })

  it('refuses to start, in one line naming the port and what holds it, when another instance (or anything) holds a port it needs', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'conveyor-up-'))
    dirs.push(dataDir)
    const ports = await fixedPorts()
    const first = await startUp(join(dataDir, 'first'), ports)
    try {
      const second = new ConveyorProcess(['up', ...ports], {
        CONVEYOR_DATA_DIR: join(dataDir, 'second'),
        CONVEYOR_LOG_LEVEL: 'error',
      })
      expect((await second.exited).code).toBe(1)
      const lines = second.output.trim().split('\n')
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(
        new RegExp(
          `^conveyor: port ${ports[1]} \\(HTTP API\\) is already in use by pid ${first.process.child.pid} \\(.*\\bup\\b.*\\): stop it, or pick another port with --port$`,
        ),
      )
      // The first instance is untouched.
      expect((await api(first.url, 'GET', '/ready')).status).toBe(200)
    } finally {
      first.process.child.kill('SIGINT')
      await first.process.exited
    }
    // The NATS monitor, held by this test's process, on an otherwise free set of ports.
    const others = await fixedPorts()
    const monitor = await hold(Number(others[3]) + 4000)
    try {
      const up = new ConveyorProcess(['up', ...others], { CONVEYOR_DATA_DIR: join(dataDir, 'third') })
      expect((await up.exited).code).toBe(1)
      expect(up.output.trim()).toMatch(
        new RegExp(
          `^conveyor: port ${monitor.port} \\(NATS monitor, the NATS port \\+ 4000\\) is already in use by pid ${process.pid} \\(.+\\): stop it, or pick another port with --nats-port$`,
        ),
      )
    } finally {
      await monitor.close()
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
