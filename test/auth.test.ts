import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { startGateway, type Gateway } from '../gateway/server.ts'
import { createLogger } from '../runtime/logger.ts'
import { TokenStore } from '../runtime/token-store.ts'
import { keys } from '../runtime/keys.ts'
import { ConveyorProcess } from './processes.ts'

let stack: Stack
let gateway: Gateway
let dir: string
let admin: string
let url: string

const as = (token: string | undefined) =>
  token ? { authorization: `Bearer ${token}` } : ({} as Record<string, string>)
const call = (token: string | undefined, method: string, path: string, body?: unknown) =>
  api(url, method, path, body, as(token))

beforeAll(async () => {
  stack = await startStack({ worker: true })
  dir = await mkdtemp(join(tmpdir(), 'conveyor-auth-'))
  // A gateway as it runs by default: auth on.
  gateway = await startGateway({
    connections: stack.connections,
    port: 0,
    dataDir: dir,
    logger: createLogger('gateway', 'error'),
  })
  url = gateway.url
  admin = (await new TokenStore(stack.connections.etcd).create({ role: 'admin' })).token
  for (const name of ['build', 'deploy'])
    expect((await call(admin, 'POST', '/resource-definitions', { name, schema: { type: 'object' } })).status).toBe(201)
})
afterAll(async () => {
  await gateway?.close()
  await stack?.close()
  await rm(dir, { recursive: true, force: true })
})

async function token(body: Record<string, unknown>): Promise<string> {
  const made = await call(admin, 'POST', '/tokens', body)
  expect(made.status).toBe(201)
  return made.body.token as string
}

describe('authentication', () => {
  it('answers 401 with WWW-Authenticate without a valid token; /health and a bare /ready need none', async () => {
    for (const bad of [undefined, 'nonsense', 'cvt_0123456789abcdef_' + 'x'.repeat(43)]) {
      const answer = await call(bad, 'GET', '/resources/build')
      expect(answer.status, String(bad)).toBe(401)
      expect(answer.headers.get('www-authenticate')).toBe('Bearer realm="conveyor"')
      expect(answer.body.type).toBe('urn:conveyor:problem:unauthorized')
    }
    // A token whose secret is wrong for its id is refused like any other.
    const forged = admin.slice(0, -3) + (admin.endsWith('aaa') ? 'bbb' : 'aaa')
    expect((await call(forged, 'GET', '/resources/build')).status).toBe(401)
    expect((await call(undefined, 'GET', '/health')).status).toBe(200)
    const ready = await call(undefined, 'GET', '/ready')
    expect(ready.status).toBe(200)
    expect(ready.body).toEqual({ status: 'ready' })
    expect((await call(admin, 'GET', '/ready')).body.etcdSpace).toBeDefined()
  })

  it('shows a token once, stores only its hash, lists it without a secret, and revokes it everywhere', async () => {
    const made = await call(admin, 'POST', '/tokens', { role: 'viewer', description: 'ci reader', expiresIn: '30d' })
    expect(made.status).toBe(201)
    expect(made.body.token).toMatch(/^cvt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)
    const id = made.body.id as string
    const stored = await stack.connections.etcd.get(keys.token(id)).string()
    // The secret is what follows `cvt_{id}_` (it may itself hold '_').
    expect(stored).not.toContain((made.body.token as string).slice(`cvt_${id}_`.length))
    expect(JSON.parse(stored!).hash).toMatch(/^[0-9a-f]{64}$/)
    const listed = (await call(admin, 'GET', '/tokens')).body.items.find((t: { id: string }) => t.id === id)
    expect(listed).toMatchObject({ id, role: 'viewer', description: 'ci reader' })
    expect(listed.token).toBeUndefined()
    expect(listed.hash).toBeUndefined()
    expect(Date.parse(listed.expiresAt) - Date.now()).toBeGreaterThan(29 * 24 * 3600_000)
    expect((await call(made.body.token, 'GET', '/resources/build')).status).toBe(200)
    expect((await call(admin, 'DELETE', `/tokens/${id}`)).status).toBe(200)
    expect((await call(admin, 'DELETE', `/tokens/${id}`)).status).toBe(404)
    // Each gateway remembers a verified token for a few seconds at most.
    await eventually(
      async () => ((await call(made.body.token, 'GET', '/resources/build')).status === 401 ? true : undefined),
      'the revoked token to be refused',
      15_000,
    )
  })

  it('refuses an expired token', async () => {
    const short = await token({ role: 'viewer', expiresIn: '1s' })
    expect((await call(short, 'GET', '/resources/build')).status).toBe(200)
    await eventually(
      async () => ((await call(short, 'GET', '/resources/build')).status === 401 ? true : undefined),
      'the token to expire',
      15_000,
    )
  })

  it('says which fields of a token request are wrong', async () => {
    const wrong = await call(admin, 'POST', '/tokens', { role: 'root', types: 'build', colour: 'red' })
    expect(wrong.status).toBe(400)
    expect(wrong.body.errors.map((e: { path: string }) => e.path)).toEqual(['/colour'])
    const role = await call(admin, 'POST', '/tokens', { role: 'root' })
    expect(role.body.errors).toEqual([{ path: '/role', message: 'must be one of admin, operator, viewer, driver' }])
    expect((await call(admin, 'POST', '/tokens', { role: 'driver' })).body.errors[0].path).toBe('/driver')
  })
})

describe('roles', () => {
  it('viewer reads, operator writes, only admin manages tokens, driver gets nothing of the API', async () => {
    const viewer = await token({ role: 'viewer' })
    const operator = await token({ role: 'operator' })
    const driver = await token({ role: 'driver', driver: 'git' })
    const resource = { name: 'b1', resource: 'build', spec: {} }
    expect((await call(viewer, 'GET', '/resources/build')).status).toBe(200)
    const refused = await call(viewer, 'POST', '/resources', resource)
    expect(refused.status).toBe(403)
    expect(refused.body.detail).toMatch(/a viewer token may not POST \/resources .*operator or admin/)
    expect((await call(operator, 'POST', '/resources', resource)).status).toBe(201)
    expect((await call(operator, 'POST', '/resources/build/b1/events', { type: 'PING' })).status).not.toBe(403)
    expect((await call(operator, 'GET', '/tokens')).status).toBe(403)
    expect((await call(operator, 'POST', '/tokens', { role: 'admin' })).status).toBe(403)
    expect((await call(driver, 'GET', '/resources/build')).status).toBe(403)
    expect((await call(admin, 'GET', '/tokens')).status).toBe(200)
  })

  it('a token limited to types reaches only those types', async () => {
    const builds = await token({ role: 'operator', types: ['build'] })
    expect((await call(builds, 'POST', '/resources', { name: 'b2', resource: 'build', spec: {} })).status).toBe(201)
    const other = await call(builds, 'POST', '/resources', { name: 'd1', resource: 'deploy', spec: {} })
    expect(other.status).toBe(403)
    expect(other.body.type).toBe('urn:conveyor:problem:type-not-allowed')
    expect((await call(builds, 'GET', '/resources/deploy')).status).toBe(403)
    expect((await call(builds, 'GET', '/resources/build/b2/history')).status).toBe(200)
    // Lists of definitions and drivers name no type; replays span every type.
    expect((await call(builds, 'GET', '/resource-definitions')).status).toBe(200)
    expect((await call(builds, 'PUT', '/resource-definitions/deploy', { schema: { type: 'object' } })).status).toBe(403)
    expect((await call(builds, 'POST', '/replay', { driver: 'x' })).status).toBe(403)
    // A run's logs belong to its resource's type.
    const runid = (await call(admin, 'GET', '/resources/build/b2')).body.status.runid as string
    expect((await call(builds, 'GET', `/logs?runid=${runid}`)).status).toBe(200)
    const deploy = await call(admin, 'POST', '/resources', { name: 'd2', resource: 'deploy', spec: {} })
    const deployRun = deploy.body.status.runid as string
    expect((await call(builds, 'GET', `/logs?runid=${deployRun}`)).status).toBe(403)
  })
})

describe('streams', () => {
  const wsUrl = (): string => url.replace('http', 'ws') + '/ws'

  function opened(socket: WebSocket): Promise<{ open: true; protocol: string } | { open: false; status: number }> {
    return new Promise((resolve) => {
      socket.on('open', () => resolve({ open: true, protocol: socket.protocol }))
      socket.on('unexpected-response', (_req, res) => resolve({ open: false, status: res.statusCode ?? 0 }))
      socket.on('error', () => undefined)
    })
  }

  it('a WebSocket needs a token: in Authorization, or for browsers in the bearer subprotocol (never echoed)', async () => {
    expect(await opened(new WebSocket(wsUrl()))).toEqual({ open: false, status: 401 })
    const header = new WebSocket(wsUrl(), { headers: as(admin) })
    expect(await opened(header)).toMatchObject({ open: true })
    header.close()
    const browser = new WebSocket(wsUrl(), ['conveyor.v1', `conveyor.bearer.${admin}`])
    expect(await opened(browser)).toEqual({ open: true, protocol: 'conveyor.v1' })
    browser.close()
  })

  it('a watch of a type outside the token is refused on the socket; SSE needs a token', async () => {
    const builds = await token({ role: 'viewer', types: ['build'] })
    const socket = new WebSocket(wsUrl(), { headers: as(builds) })
    expect(await opened(socket)).toMatchObject({ open: true })
    const frames: any[] = []
    socket.on('message', (data) => frames.push(JSON.parse(String(data))))
    socket.send(JSON.stringify({ op: 'watch', id: 'w1', type: 'deploy' }))
    socket.send(JSON.stringify({ op: 'watch', id: 'w2', type: 'build' }))
    await eventually(
      () => (frames.some((f) => f.id === 'w2' && f.type === 'list') ? true : undefined),
      'the build watch to list',
    )
    expect(frames.find((f) => f.id === 'w1')).toMatchObject({ type: 'error', code: 'type-not-allowed' })
    socket.close()
    const sse = await fetch(url + '/logs/pipeline/some-run')
    expect(sse.status).toBe(401)
    await sse.body?.cancel()
  })
})

describe('turning auth off', () => {
  it('is refused unless the gateway listens on loopback', async () => {
    await expect(
      startGateway({ connections: stack.connections, port: 0, host: '0.0.0.0', dataDir: dir, auth: false }),
    ).rejects.toThrow(/auth can be turned off only on a loopback address/)
  })

  it('conveyor token create --direct makes the first admin token of a control plane from etcd', async () => {
    const cli = new ConveyorProcess(['token', 'create', '--role', 'admin', '--direct'], {
      ...stack.servers.env,
    })
    expect((await cli.exited).code).toBe(0)
    const made = cli.output.split('\n').find((line) => line.startsWith('cvt_'))!
    expect((await call(made, 'GET', '/tokens')).status).toBe(200)
    // Without the control plane's etcd credentials, no token can be made that way.
    const outsider = new ConveyorProcess(['token', 'create', '--role', 'admin', '--direct'], {
      CONVEYOR_ETCD_ENDPOINTS: stack.servers.etcdEndpoints.join(','),
      CONVEYOR_DATA_DIR: dir,
    })
    expect((await outsider.exited).code).toBe(1)
    expect(outsider.output).not.toMatch(/cvt_/)
  })
})
