import { describe, expect, it } from 'vitest'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** Static imports and re-exports that load code (`import type` is erased); dynamic `import()` is not followed. */
const IMPORT = /^(?:import|export)\s(?!type\s)[^'"]*?from\s+'([^']+)'/gm

/** Every module a file loads, transitively: repository files by path, packages by name. */
function graph(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>()
  const packages = new Set<string>()
  const visit = (file: string): void => {
    if (files.has(file)) return
    files.add(file)
    for (const [, specifier] of readFileSync(join(ROOT, file), 'utf8').matchAll(IMPORT)) {
      if (specifier!.startsWith('.')) visit(relative(ROOT, resolve(ROOT, dirname(file), specifier!)))
      else if (specifier === 'conveyor') visit('index.ts')
      else if (!specifier!.startsWith('node:'))
        packages.add(
          specifier!.startsWith('@') ? specifier!.split('/').slice(0, 2).join('/') : specifier!.split('/')[0]!,
        )
    }
  }
  visit(entry)
  return { files, packages }
}

const CONTROL_PLANE =
  /^(gateway\/|actors\/(worker|lifecycle|pipeline|work)\/|runtime\/(resource-store|definition-store|pipeline-store|etcd-ops|txn-batcher|read-batcher|outbox|resource-view|servers\/))/

describe('layout', () => {
  it.each(['index.ts', 'cli/main.ts', 'cli/commands/driver.ts'])(
    'a driver process (%s) loads nothing of etcd, the worker, the stores or the gateway',
    (entry) => {
      const { files, packages } = graph(entry)
      expect([...files].filter((file) => CONTROL_PLANE.test(file))).toEqual([])
      expect(
        [...packages].filter((name) => ['etcd3', 'xstate', 'uWebSockets.js', 'classic-level'].includes(name)),
      ).toEqual([])
    },
  )

  it('definitions/ imports nothing of runtime/', () => {
    const offenders = readdirSync(join(ROOT, 'definitions')).flatMap((file) =>
      [...graph(`definitions/${file}`).files].filter((f) => !f.startsWith('definitions/')).map((f) => `${file} → ${f}`),
    )
    expect(offenders).toEqual([])
  })
})
