import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Etcd3, EtcdAuthenticationFailedError } from 'etcd3'
import { AuthorizationError, connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { connectServers } from '../runtime/connections.ts'
import { connectNats } from '../runtime/nats-connection.ts'
import { resolveConfig } from '../runtime/config.ts'
import { startLocalCluster, startLocalServers, type LocalServers } from '../runtime/servers/local-cluster.ts'
import { eventually } from './harness.ts'

/** NATS answers a client with `options`: its JetStream account info, or the error it got. */
async function natsAnswer(url: string, options: { user?: string; pass?: string }): Promise<unknown> {
  try {
    const nc = await connect({ servers: url, ...options, timeout: 5000, maxReconnectAttempts: 0 })
    try {
      return await (await jetstreamManager(nc)).getAccountInfo()
    } finally {
      await nc.close()
    }
  } catch (error) {
    return error
  }
}

/** etcd answers a client with `auth`: the value at `key`, or the error it got. */
async function etcdAnswer(
  endpoints: readonly string[],
  auth?: { username: string; password: string },
): Promise<unknown> {
  const client = new Etcd3({ hosts: [...endpoints], dialTimeout: 5000, ...(auth ? { auth } : {}) })
  try {
    await client.put('credentials-test').value('written')
    return await client.get('credentials-test').string()
  } catch (error) {
    return error
  } finally {
    client.close()
  }
}

let dir: string
let servers: LocalServers

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'conveyor-credentials-'))
  servers = await startLocalServers({ dataDir: join(dir, 'data') })
}, 60_000)

afterAll(async () => {
  await servers?.stop()
  await rm(dir, { recursive: true, force: true })
})

describe('the servers conveyor up starts', () => {
  it('refuse a client without credentials: nats-server and etcd alike', async () => {
    expect(await natsAnswer(servers.natsUrl, {})).toBeInstanceOf(AuthorizationError)
    const anonymous = await etcdAnswer(servers.etcdEndpoints)
    expect(anonymous).toBeInstanceOf(Error)
    expect(String(anonymous)).toMatch(/user name is empty/)
  })

  it('refuse wrong credentials', async () => {
    const { nats, etcd } = servers.credentials
    expect(await natsAnswer(servers.natsUrl, { user: nats.user, pass: 'not-the-password' })).toBeInstanceOf(
      AuthorizationError,
    )
    expect(await natsAnswer(servers.natsUrl, { user: 'someone', pass: nats.password })).toBeInstanceOf(
      AuthorizationError,
    )
    expect(await etcdAnswer(servers.etcdEndpoints, { username: etcd.username, password: 'nope' })).toBeInstanceOf(
      EtcdAuthenticationFailedError,
    )
  })

  it('take the control plane with its credentials', async () => {
    const { nats, etcd } = servers.credentials
    expect(await natsAnswer(servers.natsUrl, { user: nats.user, pass: nats.password })).toHaveProperty('streams')
    expect(await etcdAnswer(servers.etcdEndpoints, etcd)).toBe('written')
    // connectServers (every control-plane process) signs in with what LocalServers gives it.
    const connections = await connectServers(servers)
    await connections.close()
  })

  it('connectServers and connectNats fail with one line naming the refusal', async () => {
    await expect(connectNats(servers.natsUrl, { auth: {}, connectTimeoutMs: 5000 })).rejects.toThrow(
      /NATS at \S+ refused a client without credentials/,
    )
    await expect(
      connectServers({ ...servers, etcdAuth: { username: 'root', password: 'wrong' } }, { connectTimeoutMs: 5000 }),
    ).rejects.toThrow(/etcd at \S+ refused the user root/)
  })

  it('keep their credentials in the data directory, readable only by their user', async () => {
    const data = join(dir, 'data')
    expect((await stat(data)).mode & 0o777).toBe(0o700)
    expect((await stat(join(data, 'credentials.json'))).mode & 0o777).toBe(0o600)
    expect((await stat(join(data, 'nats', 'nats-server.conf'))).mode & 0o777).toBe(0o600)
    const stored = JSON.parse(await readFile(join(data, 'credentials.json'), 'utf8'))
    expect(stored).toEqual(servers.credentials)
    // Random, long enough: 24 bytes each.
    expect(servers.credentials.nats.password).toMatch(/^[\w-]{32}$/)
    expect(servers.credentials.etcd.password).not.toBe(servers.credentials.nats.password)
  })

  it('give children an environment (and a data directory) that signs in', async () => {
    for (const env of [
      servers.env,
      // `conveyor token create --direct` and roles run with the data directory of `conveyor up`.
      {
        CONVEYOR_NATS_URL: servers.natsUrl,
        CONVEYOR_ETCD_ENDPOINTS: servers.etcdEndpoints.join(','),
        CONVEYOR_DATA_DIR: servers.dataDir,
      },
    ]) {
      const config = resolveConfig({}, env)
      expect(config.natsAuth).toEqual({ user: 'conveyor', password: servers.credentials.nats.password })
      expect(config.etcdAuth).toEqual(servers.credentials.etcd)
      const connections = await connectServers(config)
      await connections.close()
    }
  })

  it('take a user fenced to its subjects later, by a config reload (how per-driver users would come)', async () => {
    const { nats } = servers.credentials
    const control = await connect({ servers: servers.natsUrl, user: nats.user, pass: nats.password })
    const fencedUser = {
      user: 'driver-demo',
      password: 'demo-secret',
      permissions: { publish: { allow: ['demo.mine.>'] }, subscribe: { allow: ['demo.mine.>', '_INBOX.>'] } },
    }
    await servers.nats.setUsers([{ user: nats.user, password: nats.password }, fencedUser])
    const seen: string[] = []
    control.subscribe('demo.>', { callback: (_error, message) => void seen.push(message.subject) })
    await control.flush()
    const fenced = await connect({ servers: servers.natsUrl, user: fencedUser.user, pass: fencedUser.password })
    const refusals: string[] = []
    void (async () => {
      for await (const status of fenced.status()) if (status.type === 'error') refusals.push(String(status.error))
    })()
    fenced.publish('demo.other.report', 'forged')
    fenced.publish('demo.mine.report', 'mine')
    await fenced.flush()
    await eventually(
      () => (seen.includes('demo.mine.report') && refusals.length > 0 ? true : undefined),
      'the allowed report to arrive and the forged one to be refused',
    )
    expect(seen).not.toContain('demo.other.report')
    expect(refusals.join('\n')).toMatch(/permissions violation/i)
    // The control plane's connection outlived the reload, and JetStream is still on.
    expect(control.isClosed()).toBe(false)
    expect((await (await jetstreamManager(control)).getAccountInfo()).streams).toBeGreaterThan(0)
    await Promise.all([fenced.close(), control.close()])
    await servers.nats.setUsers([{ user: nats.user, password: nats.password }])
    expect(await natsAnswer(servers.natsUrl, { user: fencedUser.user, pass: fencedUser.password })).toBeInstanceOf(
      AuthorizationError,
    )
  })

  it('reuse the same credentials after a restart on the same data directory, and still require them', async () => {
    const before = servers.credentials
    await servers.stop()
    servers = await startLocalServers({ dataDir: join(dir, 'data') })
    expect(servers.credentials).toEqual(before)
    expect(await natsAnswer(servers.natsUrl, {})).toBeInstanceOf(AuthorizationError)
    expect(String(await etcdAnswer(servers.etcdEndpoints))).toMatch(/user name is empty/)
    expect(await natsAnswer(servers.natsUrl, { user: before.nats.user, pass: before.nats.password })).toHaveProperty(
      'streams',
    )
    expect(await etcdAnswer(servers.etcdEndpoints, before.etcd)).toBe('written')
  }, 60_000)

  it('temporary servers get credentials of their own', async () => {
    const other = await startLocalServers()
    try {
      expect(other.credentials.nats.password).not.toBe(servers.credentials.nats.password)
      expect(await natsAnswer(other.natsUrl, {})).toBeInstanceOf(AuthorizationError)
      const { nats } = servers.credentials
      expect(await natsAnswer(other.natsUrl, { user: nats.user, pass: nats.password })).toBeInstanceOf(
        AuthorizationError,
      )
    } finally {
      await other.stop()
    }
  }, 60_000)
})

describe('the cluster conveyor cluster starts', () => {
  it('requires credentials on every NATS node and etcd member, and its routes sign in to form it', async () => {
    const cluster = await startLocalCluster({ natsNodes: 3, etcdMembers: 3 })
    try {
      for (const node of cluster.natsNodes) expect(await natsAnswer(node.url, {})).toBeInstanceOf(AuthorizationError)
      for (const member of cluster.etcdMembers)
        expect(String(await etcdAnswer([member.endpoint]))).toMatch(/user name is empty/)
      const config = await readFile(join(cluster.dataDir, 'nats0', 'nats-server.conf'), 'utf8')
      expect(config).toContain(`nats-route://route:${cluster.credentials.natsRoutes.password}@127.0.0.1:`)
      // The JetStream cluster formed over authenticated routes: streams get 3 replicas.
      const connections = await connectServers(cluster)
      try {
        expect(connections.streamReplicas).toBe(3)
        expect((await connections.etcd.cluster.memberList({})).members).toHaveLength(3)
      } finally {
        await connections.close()
      }
    } finally {
      await cluster.stop()
    }
  }, 120_000)
})
