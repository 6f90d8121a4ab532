import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { LocalServers } from '../runtime/servers/local-cluster.ts'
import type { Connections } from '../runtime/connections.ts'
import { TokenStore } from '../runtime/token-store.ts'

const CLI = fileURLToPath(new URL('../cli/bin.js', import.meta.url))

/** The environment that points a `conveyor` process at the benchmark's servers. */
export const serverEnv = (servers: LocalServers): Record<string, string> => ({ ...servers.env })

export interface WorkerProcess {
  readonly child: ChildProcess
  stop(): Promise<void>
}

/** A `conveyor worker` process, resolved once it runs. */
export async function startWorkerProcess(env: Record<string, string>): Promise<WorkerProcess> {
  const child = spawn(process.execPath, [CLI, 'worker'], {
    env: { ...process.env, ...env, CONVEYOR_LOG_LEVEL: 'error' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('running') && resolve())
    child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)))
  })
  return {
    child,
    stop: async () => {
      child.kill('SIGTERM')
      await new Promise((resolve) => child.once('exit', resolve))
    },
  }
}

/** Headers of the benchmarks' API requests: JSON, and with `BENCH_AUTH=1` an admin token. */
export const apiHeaders: Record<string, string> = { 'content-type': 'application/json' }

/**
 * A `conveyor gateway` process on a free port, resolved with its URL once it listens. It runs
 * without tokens unless `BENCH_AUTH=1` (then with an admin token in `apiHeaders`); without a
 * rate limit either way, as one client drives its whole load.
 */
export async function startGatewayProcess(
  servers: LocalServers,
  connections?: Connections,
): Promise<{ url: string; stop(): Promise<void> }> {
  const auth = process.env.BENCH_AUTH === '1' && connections !== undefined
  if (auth)
    apiHeaders.authorization = `Bearer ${(await new TokenStore(connections.etcd).create({ role: 'admin' })).token}`
  const dataDir = await mkdtemp(join(tmpdir(), 'conveyor-bench-gw-'))
  const gateway = spawn(process.execPath, [CLI, 'gateway', '--port', '0'], {
    env: {
      ...process.env,
      ...serverEnv(servers),
      CONVEYOR_DATA_DIR: dataDir,
      CONVEYOR_LOG_LEVEL: 'error',
      // One client drives the whole load: the per-token rate limit would cap it.
      CONVEYOR_AUTH: auth ? 'on' : 'off',
      CONVEYOR_RATE_LIMIT: '0',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    gateway.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const match = /listening on (http:\/\/\S+)/.exec(out)
      if (match) resolve(match[1]!)
    })
    gateway.once('exit', (code) => reject(new Error(`gateway exited with ${code}`)))
  })
  return {
    url,
    stop: async () => {
      gateway.kill('SIGTERM')
      await new Promise((resolve) => gateway.once('exit', resolve))
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}
