import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn, execFileSync } from 'node:child_process'
import { mkdtemp, mkdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defineDriver, runDriver } from 'conveyor'
import { CLI, ConveyorProcess } from './processes.ts'
import { api, eventually, startSecuredGateway, startStack, type SecuredGateway, type Stack } from './harness.ts'

let stack: Stack
let secured: SecuredGateway
let dir: string
let admin: string
/** Each test's own config file, so no context of the machine's user leaks in. */
let env: Record<string, string>

beforeAll(async () => {
  stack = await startStack({ worker: true })
  dir = await mkdtemp(join(tmpdir(), 'conveyor-cli-'))
  secured = await startSecuredGateway(stack)
  admin = secured.admin
  env = {
    ...stack.env,
    CONVEYOR_API_URL: stack.url,
    CONVEYOR_CONFIG: join(dir, 'config.yaml'),
    CONVEYOR_DATA_DIR: join(dir, 'data'),
    CONVEYOR_TOKEN: '',
  }
  stack.drivers.push(
    await runDriver(
      defineDriver({
        name: 'painter',
        resources: ['wall'],
        async reconcile(ctx) {
          await ctx.log(`painting ${ctx.resource.name}`)
          const colour = (ctx.resource.spec as { colour?: string }).colour
          if (colour === 'black') return { success: false, message: 'no black paint' }
          await ctx.log(`painted ${colour}`)
          return { success: true, message: 'painted' }
        },
      }),
      { connections: stack.connections },
    ),
  )
})
afterAll(async () => {
  await secured?.close()
  await stack?.close()
  await rm(dir, { recursive: true, force: true })
})

/** Runs the CLI to its end (stdin from `input`), with this test's environment. */
function cli(
  args: readonly string[],
  options: { input?: string; env?: Record<string, string> } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env, ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  child.stdin.end(options.input ?? '')
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })))
}

const MANIFESTS = `# the whole project in one file
kind: ResourceDefinition
name: wall
schema:
  type: object
  properties:
    colour: { type: string }
---
kind: Pipeline
name: paint
resource: wall
steps:
  - id: coat
    driver: painter
---
name: north
resource: wall
pipeline: paint
labels: { side: north }
spec: { colour: red }
`

describe('the CLI against a running gateway', () => {
  it('applies manifests as kubectl does: created, then unchanged, then configured; from a file, a directory and stdin', async () => {
    const file = join(dir, 'wall.yaml')
    await writeFile(file, MANIFESTS)
    const first = await cli(['apply', '-f', file])
    expect(first.stderr).toBe('')
    expect(first.stdout.trim().split('\n')).toEqual([
      'resourcedefinition/wall created',
      'pipeline/paint created',
      'wall/north created',
    ])
    expect(first.code).toBe(0)
    const again = await cli(['apply', '-f', file])
    expect(again.stdout.trim().split('\n')).toEqual([
      'resourcedefinition/wall unchanged',
      'pipeline/paint unchanged',
      'wall/north unchanged',
    ])
    await mkdir(join(dir, 'manifests'))
    await writeFile(join(dir, 'manifests', 'a.yaml'), MANIFESTS.replace('colour: red', 'colour: blue'))
    await writeFile(
      join(dir, 'manifests', 'b.json'),
      JSON.stringify({ name: 'south', resource: 'wall', pipeline: 'paint', spec: { colour: 'black' } }),
    )
    const changed = await cli(['apply', '-f', join(dir, 'manifests')])
    expect(changed.stdout.trim().split('\n')).toEqual([
      'resourcedefinition/wall unchanged',
      'pipeline/paint unchanged',
      'wall/north configured',
      'wall/south created',
    ])
    // A typo in one object is named with its field; the others still go; exit 1.
    const piped = await cli(['apply', '-f', '-'], {
      input:
        'name: east\nresource: wall\nspce: {}\nspec: {}\n---\nname: west\nresource: wall\nspec: { colour: green }\n',
    })
    expect(piped.code).toBe(1)
    expect(piped.stdout.trim()).toBe('wall/west created')
    expect(piped.stderr).toMatch(/^error: wall\/east \(stdin#1\): POST \/resources: 400 .*\/spce is not allowed/m)
    const unknownKind = await cli(['apply', '-f', '-'], { input: 'kind: Deployment\nname: x\n' })
    expect(unknownKind).toMatchObject({ code: 1 })
    expect(unknownKind.stderr).toMatch(/kind "Deployment" is not one of ResourceDefinition, Pipeline, Resource/)
  })

  it('gets tables, wide, json, yaml and names, with a label selector, and says when there is nothing', async () => {
    await eventually(
      async () =>
        (await api(stack.url, 'GET', '/resources/wall/north')).body.status.pipeline?.status === 'succeeded'
          ? true
          : undefined,
      'the north wall painted',
      30_000,
    )
    const listed = await cli(['get', 'wall'])
    expect(listed.code).toBe(0)
    const [header, ...rows] = listed.stdout.trim().split('\n')
    expect(header!.split(/\s{2,}/)).toEqual(['NAME', 'STATE', 'PIPELINE', 'AGE'])
    expect(rows.map((row) => row.split(/\s+/)[0])).toEqual(['north', 'south', 'west'])
    expect(rows[0]).toMatch(/^north\s+succeeded\s+paint succeeded 1\/1\s+\d+s$/)
    const wide = await cli(['get', 'wall', '-o', 'wide', '-l', 'side=north'])
    expect(wide.stdout).toMatch(/LABELS\s+RUNID\s+REVISION/)
    expect(wide.stdout).toMatch(/side=north/)
    expect(wide.stdout.trim().split('\n')).toHaveLength(2)
    const json = JSON.parse((await cli(['get', 'wall/north', '-o', 'json'])).stdout)
    expect(json).toMatchObject({ name: 'north', spec: { colour: 'blue' } })
    expect((await cli(['get', 'wall', 'north', '-o', 'yaml'])).stdout).toMatch(/^name: north$/m)
    expect((await cli(['get', 'definitions', '-o', 'name'])).stdout.trim()).toBe('resourcedefinition/wall')
    expect((await cli(['get', 'pipelines'])).stdout).toMatch(/^paint\s+wall\s+coat\s+\d+s$/m)
    expect((await cli(['get', 'drivers'])).stdout).toMatch(/^painter\s+wall\s+1\s+\d+s$/m)
    expect((await cli(['get', 'wall', '-l', 'side=up'])).stdout.trim()).toBe('No wall resources match side=up.')
    const missing = await cli(['get', 'wall/nosuch'])
    expect(missing.code).toBe(1)
    expect(missing.stderr.trim()).toMatch(/^conveyor: GET \/resources\/wall\/nosuch: 404 /)
    const noType = await cli(['get', 'nosuchtype'])
    expect(noType.code).toBe(1)
    expect(noType.stderr).toMatch(/404 resource type nosuchtype is not defined/)
    expect((await cli(['get', 'wall', '-o', 'xml'])).code).toBe(2)
  })

  it('get -w prints each change as it commits', async () => {
    const watch = new ConveyorProcess(['get', 'wall', '-w'], env)
    try {
      await watch.waitFor(/^west\s/m)
      await api(stack.url, 'POST', '/resources', { name: 'roof', resource: 'wall', spec: { colour: 'grey' } })
      await watch.waitFor(/^roof\s/m)
      await api(stack.url, 'DELETE', '/resources/wall/roof')
      await watch.waitFor(/^roof\s+deleted/m)
    } finally {
      watch.kill('SIGINT')
    }
    expect((await watch.exited).code).toBe(0)
  })

  it('describes a resource: state, accepted events, steps, driver outcomes, spec and history', async () => {
    const described = await cli(['describe', 'wall/north'])
    expect(described.code).toBe(0)
    expect(described.stdout).toMatch(/^Name:\s+north$/m)
    expect(described.stdout).toMatch(/^Labels:\s+side=north$/m)
    expect(described.stdout).toMatch(/^State:\s+succeeded/m)
    expect(described.stdout).toMatch(/^Pipeline:\s+paint succeeded/m)
    expect(described.stdout).toMatch(/^\s+coat\s+painter\s+succeeded\s+1\s+\S+\s+painted$/m)
    expect(described.stdout).toMatch(/^Spec:\n\s+colour: blue$/m)
    expect(described.stdout).toMatch(/^Events \(last \d+ of \d+\):$/m)
    expect(described.stdout).toMatch(/run\.finished/)
  })

  it("logs prints the run's lines with step prefixes; -f follows and exits with the run's result", async () => {
    const printed = await cli(['logs', 'wall/north'])
    expect(printed.stdout.trim().split('\n')).toEqual(['[coat] painting north', '[coat] painted blue'])
    await api(stack.url, 'POST', '/resources', {
      name: 'fresh',
      resource: 'wall',
      pipeline: 'paint',
      spec: { colour: 'white' },
    })
    const followed = await cli(['logs', '-f', 'wall/fresh'])
    expect(followed.stdout.trim().split('\n')).toEqual(['[coat] painting fresh', '[coat] painted white'])
    expect(followed.stderr).toMatch(/run \S+ succeeded/)
    expect(followed.code).toBe(0)
    const failed = await cli(['logs', '-f', 'wall', 'south'])
    expect(failed.stdout.trim()).toBe('[coat] painting south')
    expect(failed.code).toBe(1)
    expect((await cli(['logs', 'wall/north', '--step', 'nosuch'])).stderr).toMatch(/has no step nosuch \(steps: coat\)/)
  })

  it('sends events, names what the state accepts when refused, and checks every flag', async () => {
    const lifecycle = {
      initial: 'closed',
      states: { closed: { on: { OPEN: 'open' } }, open: { on: { CLOSE: 'closed' } } },
    }
    expect(
      (await api(stack.url, 'POST', '/resource-definitions', { name: 'door', schema: {}, lifecycle })).status,
    ).toBe(201)
    expect((await api(stack.url, 'POST', '/resources', { name: 'front', resource: 'door', spec: {} })).status).toBe(201)
    const opened = await cli(['send', 'door/front', 'OPEN', '--data', '{"by":"me"}'])
    expect(opened.stdout.trim()).toBe('door/front: closed → open on OPEN')
    const refused = await cli(['send', 'door', 'front', 'OPEN'])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/409 .*\(it accepts now: CLOSE\)/)
    expect((await cli(['send', 'door/front', 'CLOSE', '--data', 'nope'])).stderr).toMatch(
      /--data must be a JSON object/,
    )
    expect((await cli(['history', 'door/front', '--limit', 'abc'])).code).toBe(2)
    expect((await cli(['verify', '--port', '18080'])).stderr).toMatch(/unknown option '--port'/)
    expect((await cli(['history', 'door/nosuch'])).stderr).toMatch(/404/)
    const history = await cli(['history', 'door/front', '--kind', 'transitioned'])
    expect(history.stdout).toMatch(/transitioned\s+closed → open on OPEN/)
    expect((await cli(['verify', 'door/front'])).stdout).toMatch(/^ok\s+door\/front/m)
    const since = await cli(['replay', '--driver', 'painter', '--since', 'yesterday'])
    expect(since.code).toBe(1)
    expect(since.stderr).toMatch(/--since must be an ISO time .* or a duration ago/)
    const unknown = await cli(['replay', '--driver', 'nosuch', '--since', '1h'])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/404/)
  })

  it('deletes by manifest and by name', async () => {
    expect((await cli(['delete', 'wall/west'])).stdout.trim()).toBe('wall/west deleted')
    expect((await cli(['delete', 'wall/west'])).code).toBe(1)
    expect((await cli(['delete', 'wall/west', '--ignore-not-found'])).code).toBe(0)
  })

  it('finds its server and token in contexts (flags over environment over the config file), kept with mode 0600', async () => {
    const bare = { CONVEYOR_API_URL: '' }
    const unauthorised = await cli(['get', 'definitions', '--api', secured.url], { env: bare })
    expect(unauthorised.code).toBe(1)
    expect(unauthorised.stderr).toMatch(/401 .*no token/)
    expect(
      (await cli(['config', 'set-context', 'prod', '--server', secured.url, '--token', admin], { env: bare })).stdout,
    ).toMatch(/context prod created \(current\)/)
    expect(((await stat(env.CONVEYOR_CONFIG!)).mode & 0o777).toString(8)).toBe('600')
    const viaContext = await cli(['get', 'definitions', '-o', 'name'], { env: bare })
    expect(viaContext.stdout, viaContext.stderr).toMatch(/resourcedefinition\/wall/)
    await cli(['config', 'set-context', 'local', '--server', stack.url], { env: bare })
    expect((await cli(['config', 'get-contexts'], { env: bare })).stdout).toMatch(/^\*\s+prod\s/m)
    // The environment wins over the context; a flag wins over both.
    expect((await cli(['config', 'current-context'], { env: { CONVEYOR_API_URL: stack.url } })).stdout).toMatch(
      new RegExp(`^prod\\s+${stack.url}`),
    )
    const wrong = await cli(
      ['get', 'definitions', '--token', 'cvt_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
      {
        env: bare,
      },
    )
    expect(wrong.stderr).toMatch(/401 .*the token from --token is not valid/)
    expect((await cli(['--context', 'nosuch', 'get', 'definitions'], { env: bare })).stderr).toMatch(
      /no context "nosuch"/,
    )
    await cli(['config', 'use-context', 'local'], { env: bare })
    expect((await cli(['config', 'current-context'], { env: bare })).stdout).toMatch(/^local\s/)
  })

  it('prints its version and a completion script bash accepts', async () => {
    expect((await cli(['version'])).stdout).toMatch(/^conveyor \d+\.\d+\.\d+ \(node v\d+/)
    const script = (await cli(['completion', 'bash'])).stdout
    const file = join(dir, 'completion.bash')
    await writeFile(file, script)
    execFileSync('bash', ['-n', file])
    // Completing `conveyor get -` offers get's own flags.
    const offered = execFileSync('bash', [
      '-c',
      `source ${file}; COMP_WORDS=(conveyor get -); COMP_CWORD=2; _conveyor; echo "\${COMPREPLY[@]}"`,
    ]).toString()
    expect(offered.split(' ')).toEqual(expect.arrayContaining(['--output', '--selector', '--watch']))
    expect((await cli(['completion', 'fish'])).code).toBe(1)
  })
})
