import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { api, startStack, type Stack } from './harness.ts'
import { ConveyorProcess } from './processes.ts'
import { TokenStore } from '../runtime/token-store.ts'

/** The part of a `cvt_{id}_{secret}` token that proves its holder. */
const secretOf = (token: string): string => token.split('_').at(-1)!

/** Runs a CLI command to its end; stdout and stderr apart. */
async function cli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const process = new ConveyorProcess(args, env)
  let stdout = ''
  let stderr = ''
  process.child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  process.child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const { code } = await process.exited
  return { code, stdout, stderr }
}

describe('tokens and request bodies never reach a log', () => {
  let stack: Stack
  let dir: string
  let gateway: ConveyorProcess
  let url: string
  let admin: string
  let env: Record<string, string>

  beforeAll(async () => {
    stack = await startStack()
    dir = await mkdtemp(join(tmpdir(), 'conveyor-secret-logs-'))
    env = { ...stack.env, CONVEYOR_AUTH: 'on', CONVEYOR_LOG_LEVEL: 'debug', CONVEYOR_DATA_DIR: dir }
    admin = (await new TokenStore(stack.connections.etcd).create({ role: 'admin' })).token
    gateway = new ConveyorProcess(['gateway', '--port', '0'], env)
    url = (await gateway.waitFor(/listening on (http:\/\/\S+)/))[1]!
  })
  afterAll(async () => {
    gateway?.kill('SIGTERM')
    await gateway?.exited
    await stack?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('conveyor token create prints the token once, on stdout only', async () => {
    const created = await cli(['token', 'create', '--role', 'viewer', '--api', url], { ...env, CONVEYOR_TOKEN: admin })
    expect(created.code, created.stderr).toBe(0)
    const token = created.stdout.trim()
    expect(token).toMatch(/^cvt_[0-9a-f]+_\S+$/)
    expect(created.stdout.split(secretOf(token)).length - 1).toBe(1)
    expect(created.stderr).not.toContain(secretOf(token))
    expect(created.stderr).not.toContain(secretOf(admin))
    expect(created.stdout).not.toContain(secretOf(admin))
    // Listing shows ids, never a secret.
    const listed = await cli(['token', 'list', '--api', url], { ...env, CONVEYOR_TOKEN: admin })
    expect(listed.code, listed.stderr).toBe(0)
    expect(listed.stdout + listed.stderr).not.toContain(secretOf(token))
    // A refused token is not echoed back by the CLI either.
    const forged = `${admin.slice(0, admin.lastIndexOf('_'))}_${'x'.repeat(43)}`
    const refused = await cli(['token', 'list', '--api', url], { ...env, CONVEYOR_TOKEN: forged })
    expect(refused.code).not.toBe(0)
    expect(refused.stdout + refused.stderr).not.toContain('x'.repeat(43))
  })

  it('the gateway at debug level logs no token, no Authorization header and no request body', async () => {
    const viewer = (await new TokenStore(stack.connections.etcd).create({ role: 'viewer' })).token
    const marker = 'body-marker-password-0f1e2d3c'
    const as = (token: string) => ({ authorization: `Bearer ${token}` })
    expect(
      (await api(url, 'POST', '/resource-definitions', { name: 'logged', schema: { type: 'object' } }, as(admin)))
        .status,
    ).toBe(201)
    const calls: [string, string, unknown, Record<string, string>][] = [
      ['POST', '/resources', { name: 'one', resource: 'logged', spec: { password: marker } }, as(admin)],
      ['GET', '/resources/logged/one', undefined, as(viewer)],
      ['PUT', '/resources/logged/one', { spec: { password: marker } }, as(viewer)], // 403
      ['POST', '/resources', `{"name":"two","spec":{"password":"${marker}"`, as(admin)], // 400: truncated JSON
      ['POST', '/resources', { name: 'x'.repeat(300), resource: 'logged', spec: { password: marker } }, as(admin)],
      ['GET', '/resources/logged', undefined, as(`${viewer}nope`)], // 401
      [
        'GET',
        '/resources/logged',
        undefined,
        { authorization: `Basic ${Buffer.from(`u:${marker}`).toString('base64')}` },
      ],
      ['POST', '/resources/logged/one/events', { type: 'poke', password: marker }, as(admin)],
      ['GET', '/tokens', undefined, as(admin)],
    ]
    for (const [method, path, body, headers] of calls) {
      const answer = await api(url, method, path, body, headers)
      expect(answer.status, `${method} ${path}`).toBeLessThan(500)
    }
    // The WebSocket with the token in the bearer subprotocol, and a log stream with it in the header.
    const socket = new WebSocket(url.replace('http', 'ws') + '/ws', ['conveyor.v1', `conveyor.bearer.${viewer}`])
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve())
      socket.once('error', reject)
    })
    socket.send(JSON.stringify({ op: 'watch', id: 'w', type: 'logged' }))
    await new Promise((resolve) => socket.once('message', resolve))
    socket.close()
    const stream = await fetch(`${url}/logs/streams/nobody/run-1`, { headers: as(viewer) })
    await stream.body?.cancel()
    // Every request above was handled (the last one answered) before the output is read.
    expect((await api(url, 'GET', '/ready', undefined, as(viewer))).status).toBeLessThan(500)
    const output = gateway.output
    for (const secret of [secretOf(admin), secretOf(viewer), marker, Buffer.from(`u:${marker}`).toString('base64')])
      expect(output).not.toContain(secret)
    expect(output.toLowerCase()).not.toContain('authorization')
    expect(output.toLowerCase()).not.toContain('bearer')
  })
})
