import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { defineDriver, runDriver } from 'conveyor'
import { api, eventually, startStack, type Stack } from './harness.ts'
import { WsClient } from './ws-client.ts'
import { startGateway, type Gateway } from '../gateway/server.ts'
import { createLogger } from '../runtime/logger.ts'
import { TokenStore } from '../runtime/token-store.ts'
import { shellDriver } from '../actors/driver/builtin/shell.ts'
import { REDACTED, maskDeep, masker, redactSpec, secretPointers, secretValues } from '../definitions/secret-fields.ts'

const PASSWORD = 'hunter2-password-value'
const DB_KEY = 'db-key-4242-secret'
const API_KEYS = ['api-key-one-xyz', 'api-key-two-xyz']
const SECRETS = [PASSWORD, DB_KEY, ...API_KEYS]

const SCHEMA = {
  type: 'object',
  properties: {
    repository: { type: 'string' },
    password: { type: 'string', writeOnly: true },
    db: { type: 'object', properties: { user: { type: 'string' }, key: { type: 'string', writeOnly: true } } },
    keys: { type: 'array', items: { type: 'string', writeOnly: true } },
  },
}
const SPEC = {
  repository: 'https://example.invalid/app.git',
  password: PASSWORD,
  db: { user: 'app', key: DB_KEY },
  keys: API_KEYS,
}

describe('secret fields of a schema', () => {
  it('are the properties and array items marked writeOnly, at any depth', () => {
    expect(secretPointers(SCHEMA)).toEqual(['/password', '/db/key', '/keys/*'])
    expect(
      secretPointers({ type: 'object', properties: { 'a/b~c': { writeOnly: true }, open: { writeOnly: false } } }),
    ).toEqual(['/a~1b~0c'])
    expect(secretPointers({ type: 'object' })).toEqual([])
  })

  it('are replaced in a spec, absent ones stay absent, and the spec itself is not changed', () => {
    const pointers = secretPointers(SCHEMA)
    const spec = structuredClone(SPEC)
    expect(redactSpec(spec, pointers)).toEqual({
      repository: SPEC.repository,
      password: REDACTED,
      db: { user: 'app', key: REDACTED },
      keys: [REDACTED, REDACTED],
    })
    expect(spec).toEqual(SPEC)
    expect(redactSpec({ repository: 'x', db: {} }, pointers)).toEqual({ repository: 'x', db: {} })
    const plain = { a: 1 }
    expect(redactSpec(plain, [])).toBe(plain)
    expect(secretValues(SPEC, pointers).sort()).toEqual([...SECRETS].sort())
  })

  it('are masked in text as they are and as JSON escapes them; short values are left alone', () => {
    const mask = masker(['pa"ss\\word', 'abc', 'long-secret', 'long-secret-longer'])
    expect(mask('a pa"ss\\word b')).toBe('a *** b')
    expect(mask(JSON.stringify({ v: 'pa"ss\\word' }))).toBe('{"v":"***"}')
    expect(mask('abc long-secret-longer long-secret')).toBe('abc *** ***')
    expect(maskDeep({ a: ['x long-secret'], n: 1 }, mask)).toEqual({ a: ['x ***'], n: 1 })
    const identity = masker([])
    expect(identity('anything')).toBe('anything')
  })
})

describe('secret fields over the API, the watch and the logs', () => {
  let stack: Stack
  let gateway: Gateway
  let dir: string
  let viewer: string
  let operator: string
  const as = (token: string) => ({ authorization: `Bearer ${token}` })
  const read = (token: string, path: string) => api(gateway.url, 'GET', path, undefined, as(token))

  beforeAll(async () => {
    stack = await startStack({ worker: true })
    dir = await mkdtemp(join(tmpdir(), 'conveyor-secrets-'))
    gateway = await startGateway({
      connections: stack.connections,
      port: 0,
      dataDir: dir,
      logger: createLogger('gateway', 'error'),
    })
    const tokens = new TokenStore(stack.connections.etcd)
    viewer = (await tokens.create({ role: 'viewer' })).token
    operator = (await tokens.create({ role: 'operator' })).token
    for (const name of ['vault', 'vault-ci'])
      expect((await api(stack.url, 'POST', '/resource-definitions', { name, schema: SCHEMA })).status).toBe(201)
    expect((await api(stack.url, 'POST', '/resources', { name: 'app', resource: 'vault', spec: SPEC })).status).toBe(
      201,
    )
    expect(
      (await api(stack.url, 'POST', '/resources', { name: 'bare', resource: 'vault', spec: { repository: 'r' } }))
        .status,
    ).toBe(201)
  })
  afterAll(async () => {
    await gateway?.close()
    await stack?.close()
    await rm(dir, { recursive: true, force: true })
  })

  const leaks = (value: unknown): string[] => SECRETS.filter((secret) => JSON.stringify(value).includes(secret))

  it('a viewer reads resources, lists, versions and history with the secret values redacted', async () => {
    const one = await read(viewer, '/resources/vault/app')
    expect(one.status).toBe(200)
    expect(one.body.spec).toEqual({
      repository: SPEC.repository,
      password: REDACTED,
      db: { user: 'app', key: REDACTED },
      keys: [REDACTED, REDACTED],
    })
    const listed = await read(viewer, '/resources/vault')
    expect(listed.body.items).toHaveLength(2)
    expect(leaks(listed.body)).toEqual([])
    // Absent stays absent.
    expect(listed.body.items.find((r: any) => r.name === 'bare').spec).toEqual({ repository: 'r' })
    const version = await read(viewer, '/resources/vault/app/1')
    expect(version.status).toBe(200)
    expect(version.body.spec.password).toBe(REDACTED)
    const history = await eventually(async () => {
      const page = await read(viewer, '/resources/vault/app/history')
      return page.body.items?.some((item: any) => item.kind === 'created') ? page : undefined
    }, 'the created event in the history')
    expect(history.body.items.find((item: any) => item.kind === 'created').event.object.spec.password).toBe(REDACTED)
    expect(leaks(history.body)).toEqual([])
    const actor = await read(viewer, '/resources/vault/app/actor')
    expect(actor.status).toBe(200)
    expect(leaks(actor.body)).toEqual([])
  })

  it('operators and admins see the values they could write', async () => {
    expect((await read(operator, '/resources/vault/app')).body.spec).toEqual(SPEC)
    expect((await read(operator, '/resources/vault/app/1')).body.spec).toEqual(SPEC)
    expect((await api(stack.url, 'GET', '/resources/vault/app')).body.spec).toEqual(SPEC)
    const history = await read(operator, '/resources/vault/app/history')
    expect(history.body.items.find((item: any) => item.kind === 'created').event.object.spec).toEqual(SPEC)
  })

  it('a viewer watching gets lists and changes redacted; an operator on the same gateway gets the values', async () => {
    const watching = new WsClient(gateway.url, { headers: as(viewer) })
    const writer = new WsClient(gateway.url, { headers: as(operator) })
    try {
      await watching.send({ op: 'watch', id: 'w', type: 'vault' })
      await writer.send({ op: 'watch', id: 'w', type: 'vault' })
      const listed = await eventually(() => watching.listed('w'), 'the viewer list')
      await eventually(() => writer.listed('w'), 'the operator list')
      expect(listed.items.find((r: any) => r.name === 'app').spec.password).toBe(REDACTED)
      expect(leaks(listed.items)).toEqual([])
      const updated = { ...SPEC, repository: 'https://example.invalid/other.git' }
      expect((await api(stack.url, 'PUT', '/resources/vault/app', { spec: updated })).status).toBe(200)
      const [change] = await eventually(
        () => (watching.changes('w').length > 0 ? watching.changes('w') : undefined),
        'the viewer change',
      )
      expect(change.object.spec).toMatchObject({ repository: updated.repository, password: REDACTED })
      const [seen] = await eventually(
        () => (writer.changes('w').length > 0 ? writer.changes('w') : undefined),
        'the operator change',
      )
      expect(seen.object.spec).toEqual(updated)
      expect(leaks(watching.messages)).toEqual([])
    } finally {
      await watching.close()
      await writer.close()
    }
  })

  it("a driver's log lines never hold a secret value: a reconcile that logs the spec, a shell step that echoes it", async () => {
    const driver = await runDriver(
      defineDriver({
        name: 'leaky',
        resources: ['vault'],
        reconcile: (ctx) => {
          ctx.log('password is', ctx.resource.spec.password)
          ctx.log('spec', ctx.resource.spec)
          ctx.output('stdout', `key=${String((ctx.resource.spec.db as { key: string }).key)}!`)
          return {
            success: true,
            message: `done with ${String(ctx.resource.spec.password)}`,
            data: { echoed: [ctx.resource.spec.password] },
          }
        },
      }),
      { connections: stack.connections, logger: createLogger('driver', 'error') },
    )
    stack.drivers.push(driver)
    const created = await api(stack.url, 'POST', '/resources', { name: 'logged', resource: 'vault', spec: SPEC })
    const done = await eventually(
      async () => {
        const resource = (await api(stack.url, 'GET', '/resources/vault/logged')).body
        return resource.status.drivers.leaky ? resource : undefined
      },
      'the leaky driver outcome',
      30_000,
    )
    const lines = await eventually(async () => {
      const log = (await api(stack.url, 'GET', `/logs?runid=${created.body.runid}&driver=leaky`)).body
      return Array.isArray(log) && log.length >= 3 ? log : undefined
    }, 'the leaky log')
    expect(lines.map((l: any) => l.message).join('\n')).toContain('password is ***')
    expect(lines.map((l: any) => l.message).join('\n')).toContain('key=***!')
    expect(leaks(lines)).toEqual([])
    expect(leaks(done.status.drivers.leaky)).toEqual([])

    stack.drivers.push(
      await runDriver(shellDriver, {
        connections: stack.connections,
        logger: createLogger('driver', 'error'),
        workspaceRoot: join(dir, 'workspaces'),
      }),
    )
    expect(
      (
        await api(stack.url, 'POST', '/pipelines', {
          name: 'echo-secrets',
          resource: 'vault-ci',
          steps: [
            {
              id: 'echo',
              driver: 'shell',
              commands: [
                'echo "pw=$SPEC_PASSWORD"',
                'cat "$CONVEYOR_SPEC_FILE"',
                'echo "copy=$SPEC_PASSWORD" >> "$CONVEYOR_OUTPUT"',
              ],
            },
          ],
        })
      ).status,
    ).toBe(201)
    const run = await api(stack.url, 'POST', '/resources', {
      name: 'ci',
      resource: 'vault-ci',
      pipeline: 'echo-secrets',
      spec: SPEC,
    })
    expect(run.status).toBe(201)
    const finished = await eventually(
      async () => {
        const resource = (await api(stack.url, 'GET', '/resources/vault-ci/ci')).body
        return resource.status.pipeline?.status === 'running' ? undefined : resource
      },
      'the pipeline to end',
      30_000,
    )
    expect(finished.status.pipeline.status).toBe('succeeded')
    const shellLines = await eventually(async () => {
      const log = (await api(stack.url, 'GET', `/logs?runid=${run.body.runid}&driver=shell`)).body
      return Array.isArray(log) && log.some((l: any) => String(l.message).startsWith('pw=')) ? log : undefined
    }, 'the shell log')
    expect(shellLines.map((l: any) => l.message)).toContain('pw=***')
    expect(leaks(shellLines)).toEqual([])
    // What a step reports (its data, shown in the status and given to later steps) is masked too.
    expect(finished.status.steps[0].data).toMatchObject({ copy: '***' })
    expect(leaks(finished.status)).toEqual([])
  })
})
