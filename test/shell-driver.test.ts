import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runDriver, type DriverHandle } from 'conveyor'
import { shellDriver } from '../actors/driver/builtin/shell.ts'
import { stepInputs } from '../actors/driver/builtin/step-inputs.ts'
import { createLogger } from '../runtime/logger.ts'
import { startGateway } from '../gateway/server.ts'
import { api, eventually, startStack, type Stack } from './harness.ts'

let stack: Stack
let shell: DriverHandle
let dir: string

beforeAll(async () => {
  stack = await startStack({ worker: true })
  dir = await mkdtemp(join(tmpdir(), 'conveyor-shell-'))
  shell = await runDriver(shellDriver, {
    connections: stack.connections,
    logger: createLogger('shell', 'error'),
    workspaceRoot: join(dir, 'workspaces'),
  })
  expect(
    (await api(stack.url, 'POST', '/resource-definitions', { name: 'build', version: '1', schema: { type: 'object' } }))
      .status,
  ).toBe(201)
})
afterAll(async () => {
  await shell?.close()
  await stack?.close()
  await rm(dir, { recursive: true, force: true })
})

async function finishedRun(name: string): Promise<any> {
  return await eventually(
    async () => {
      const got = await api(stack.url, 'GET', `/resources/build/${name}`)
      return ['succeeded', 'failed', 'cancelled'].includes(got.body.status?.pipeline?.status) ? got.body : undefined
    },
    `run ${name} to finish`,
    20_000,
  )
}

async function logsOf(runid: string): Promise<any[]> {
  const text = await (await fetch(`${stack.url}/logs/pipeline/${runid}`)).text()
  return text
    .split('\n')
    .filter((l) => l.startsWith('data: '))
    .map((l) => JSON.parse(l.slice(6)))
}

describe('the built-in shell driver', () => {
  it("runs the README's pipeline as written against a local git repository: steps share the run's workspace, data reaches later steps, the workspace goes when the run ends", async () => {
    const readme = await readFile(fileURLToPath(new URL('../README.md', import.meta.url)), 'utf8')
    const pipeline = JSON.parse(/api -XPOST localhost:8080\/pipelines\/ -d '([\s\S]*?)'\n/.exec(readme)![1]!)
    expect((await api(stack.url, 'POST', '/pipelines', pipeline)).status).toBe(201)
    const repo = join(dir, 'app-repo')
    await mkdir(repo)
    const files: Record<string, string> = {
      'package.json': JSON.stringify({
        name: 'app',
        version: '1.0.0',
        private: true,
        scripts: { test: 'node -e "console.log(\'tests pass\')"', lint: 'node -e "console.log(\'lint clean\')"' },
      }),
      'package-lock.json': JSON.stringify({
        name: 'app',
        version: '1.0.0',
        lockfileVersion: 3,
        requires: true,
        packages: { '': { name: 'app', version: '1.0.0' } },
      }),
      '.npmrc': 'audit=false\nfund=false\nupdate-notifier=false\n',
    }
    for (const [file, text] of Object.entries(files)) await writeFile(join(repo, file), text)
    const git = (args: string[]): string =>
      execFileSync('git', args, {
        cwd: repo,
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: 't',
          GIT_AUTHOR_EMAIL: 't@localhost',
          GIT_COMMITTER_NAME: 't',
          GIT_COMMITTER_EMAIL: 't@localhost',
        },
      })
        .toString()
        .trim()
    git(['init', '-q'])
    git(['add', '.'])
    git(['commit', '-qm', 'app'])
    const commit = git(['rev-parse', 'HEAD'])
    const created = await api(stack.url, 'POST', '/resources', {
      name: 'my-app-ci',
      resource: 'build',
      pipeline: pipeline.name,
      spec: { repository: `file://${repo}` },
    })
    expect(created.status).toBe(201)
    const done = await finishedRun('my-app-ci')
    expect(done.status.steps.map((s: any) => `${s.id}:${s.status}`)).toEqual([
      'clone:succeeded',
      'test:succeeded',
      'lint:succeeded',
    ])
    expect(done.status.steps[0].data).toMatchObject({ commit })
    const lines = (await logsOf(done.runid)).map((l) => l.message)
    expect(lines).toContain('tests pass')
    expect(lines).toContain('lint clean')
    expect(lines).toContain(`linted ${commit}`)
    await eventually(
      async () => ((await stat(join(dir, 'workspaces', done.runid)).catch(() => undefined)) ? undefined : true),
      'the workspace to be removed',
    )
  })
  it("runs commands in the run's workspace, passes spec values only as environment, streams stdout and stderr, reports the exit code", async () => {
    const marker = join(dir, 'pwned')
    await api(stack.url, 'POST', '/pipelines', {
      name: 'sh',
      resource: 'build',
      steps: [
        {
          id: 'script',
          driver: 'shell',
          env: { GREETING: 'hello' },
          commands: [
            'echo "$GREETING $SPEC_TARGET"',
            'echo "msg=$SPEC_MESSAGE"',
            'echo to-stderr >&2',
            'pwd; ls -A | wc -l',
            'echo "$SPEC_OPTIONS"',
            'exit 3',
            'echo never',
          ],
        },
      ],
    })
    const hostile = `"; touch ${marker}; echo "`
    const created = await api(stack.url, 'POST', '/resources', {
      name: 'b1',
      resource: 'build',
      pipeline: 'sh',
      spec: { target: 'world', message: hostile, options: { fast: true } },
    })
    expect(created.status).toBe(201)
    const done = await finishedRun('b1')
    expect(done.status.pipeline.status).toBe('failed')
    expect(done.status.steps[0]).toMatchObject({
      status: 'failed',
      message: 'command 6 of 7 exited with code 3',
      data: { exitCode: 3, command: 5 },
    })
    const lines = await logsOf(done.runid)
    const output = lines
      .filter((l) => l.stream === 'stdout' || l.stream === 'stderr')
      .map((l) => `${l.stream}: ${l.message}`)
    expect(output[0]).toBe('stdout: hello world')
    expect(output[1]).toBe(`stdout: msg=${hostile}`)
    expect(output[2]).toBe('stderr: to-stderr')
    expect(output[3]).toBe(`stdout: ${join(dir, 'workspaces', done.runid)}`)
    expect(output[4]).toBe('stdout: 0')
    expect(output[5]).toBe('stdout: {"fast":true}')
    expect(output.join('\n')).not.toContain('never')
    expect(lines.filter((l) => l.stream === 'log').map((l) => l.message)).toContain('$ exit 3')
    expect(lines.at(-1)).toMatchObject({ event: 'end', success: false })
    await expect(stat(marker)).rejects.toThrow()
  })

  it('passes a spec too big for the environment through files: $CONVEYOR_SPEC_FILE and $SPEC_<KEY>_FILE', async () => {
    const big = 'x'.repeat(300 * 1024)
    await api(stack.url, 'POST', '/pipelines', {
      name: 'sh-big',
      resource: 'build',
      steps: [
        {
          id: 'read',
          driver: 'shell',
          retries: 0,
          commands: [
            'echo "small=$SPEC_SMALL"',
            'echo "big-in-env=${SPEC_BIG:-none}"',
            'echo "big-file=$(wc -c < "$SPEC_BIG_FILE")"',
            `node -e 'const s = JSON.parse(require("fs").readFileSync(process.env.CONVEYOR_SPEC_FILE, "utf8")); console.log("spec-file", s.big.length, s.small)'`,
            'ls -A | wc -l',
            'echo "size=$(wc -c < "$SPEC_BIG_FILE")" >> "$CONVEYOR_OUTPUT"',
          ],
        },
      ],
    })
    // The default gateway takes bodies up to 256 KiB (enough for E2BIG at 128 KiB); one with a higher limit takes this.
    const roomy = await startGateway({
      auth: false,
      connections: stack.connections,
      port: 0,
      dataDir: join(dir, 'roomy-gateway'),
      maxBodyBytes: 1024 * 1024,
      logger: createLogger('gateway', 'error'),
    })
    try {
      const created = await api(roomy.url, 'POST', '/resources', {
        name: 'b-big',
        resource: 'build',
        pipeline: 'sh-big',
        spec: { small: 'kept in env', big },
      })
      expect(created.status).toBe(201)
    } finally {
      await roomy.close()
    }
    const done = await finishedRun('b-big')
    expect(done.status.steps[0]).toMatchObject({ status: 'succeeded', data: { size: String(big.length) } })
    const output = (await logsOf(done.runid)).filter((l) => l.stream === 'stdout').map((l) => l.message)
    expect(output).toEqual([
      'small=kept in env',
      'big-in-env=none',
      `big-file=${big.length}`,
      `spec-file ${big.length} kept in env`,
      '0',
    ])
  })

  it('kills the whole process group when the step times out', async () => {
    const pidFile = join(dir, 'background.pid')
    await api(stack.url, 'POST', '/pipelines', {
      name: 'sh-slow',
      resource: 'build',
      steps: [
        {
          id: 'hang',
          driver: 'shell',
          timeout: '1s',
          retries: 0,
          commands: [`sleep 60 & echo $! > ${pidFile}; echo started; wait`],
        },
      ],
    })
    await api(stack.url, 'POST', '/resources', { name: 'b2', resource: 'build', pipeline: 'sh-slow', spec: {} })
    const done = await finishedRun('b2')
    expect(done.status.steps[0].message).toMatch(/timed out after 1000 ms/)
    const pid = Number(await readFile(pidFile, 'utf8'))
    expect(pid).toBeGreaterThan(0)
    await eventually(() => {
      try {
        process.kill(pid, 0)
        return undefined
      } catch {
        return true
      }
    }, 'the background process to be killed')
  })

  it(
    'finishes a step whose command leaves a process outside its group holding the output open',
    { timeout: 30_000 },
    async () => {
      const pidFile = join(dir, 'escaped.pid')
      await api(stack.url, 'POST', '/pipelines', {
        name: 'sh-escape',
        resource: 'build',
        steps: [
          {
            id: 'escape',
            driver: 'shell',
            retries: 0,
            commands: [`setsid sh -c 'echo $$ > ${pidFile}; exec sleep 60' & echo left`],
          },
        ],
      })
      await api(stack.url, 'POST', '/resources', { name: 'b3', resource: 'build', pipeline: 'sh-escape', spec: {} })
      try {
        const done = await finishedRun('b3')
        expect(done.status.steps[0]).toMatchObject({ status: 'succeeded', data: { exitCode: 0 } })
      } finally {
        const pid = Number(await readFile(pidFile, 'utf8').catch(() => '0'))
        if (pid > 0) process.kill(pid, 'SIGKILL')
      }
    },
  )
})

describe('what a shell step is handed', () => {
  it('keeps small values in the environment and moves what would overflow it (one value, or all together) to files', () => {
    const medium = 'm'.repeat(60 * 1024)
    const spec: Record<string, unknown> = { small: 'yes', huge: 'h'.repeat(200 * 1024), nul: 'a\0b' }
    for (let i = 0; i < 12; i++) spec[`part${i}`] = medium
    const { env, files } = stepInputs(spec, { clone: { commit: 'abc' } }, '/inputs')
    expect(env).toMatchObject({
      SPEC_SMALL: 'yes',
      SPEC_NUL: 'ab',
      STEP_CLONE_COMMIT: 'abc',
      SPEC_HUGE_FILE: '/inputs/SPEC_HUGE',
      CONVEYOR_SPEC_FILE: '/inputs/spec.json',
      CONVEYOR_STEPS_FILE: '/inputs/steps.json',
      CONVEYOR_STEPS: '{"clone":{"commit":"abc"}}',
    })
    expect(env.SPEC_HUGE).toBeUndefined()
    expect(env.CONVEYOR_SPEC).toBeUndefined()
    const inEnv = Object.keys(spec).filter((key) => env[`SPEC_${key.toUpperCase()}`] !== undefined)
    const inFiles = Object.keys(spec).filter((key) => env[`SPEC_${key.toUpperCase()}_FILE`] !== undefined)
    expect(inEnv.length + inFiles.length).toBe(Object.keys(spec).length)
    expect(inFiles.filter((key) => key.startsWith('part')).length).toBeGreaterThan(0)
    const total = Object.entries(env).reduce((sum, [name, value]) => sum + name.length + value.length + 2, 0)
    expect(total).toBeLessThanOrEqual(512 * 1024)
    expect(files.get('/inputs/SPEC_HUGE')).toBe(spec.huge)
    expect(JSON.parse(files.get('/inputs/spec.json')!)).toEqual(spec)
  })
})
