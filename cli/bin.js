#!/usr/bin/env node
// The `conveyor` command. Runs the compiled dist/ when `npm run build` made it and no source file
// is newer (less memory, faster start); otherwise loads the TypeScript sources through tsx.
import { readdirSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'

const root = fileURLToPath(new URL('..', import.meta.url))
const SOURCES = ['index.ts', 'server.ts', 'runtime', 'actors', 'definitions', 'gateway', 'cli', 'client']

function newestSource(path) {
  const stat = statSync(path, { throwIfNoEntry: false })
  if (!stat) return 0
  if (!stat.isDirectory()) return path.endsWith('.ts') ? stat.mtimeMs : 0
  let newest = 0
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestSource(join(path, entry)))
  return newest
}

const built = statSync(join(root, 'dist', 'BUILD_STAMP'), { throwIfNoEntry: false })
let main
if (built && SOURCES.every((source) => newestSource(join(root, source)) <= built.mtimeMs)) {
  ;({ main } = await import('../dist/cli/main.js'))
} else {
  const { register } = await import('tsx/esm/api')
  register()
  ;({ main } = await import('./main.ts'))
}
// Exit explicitly: a failed start may leave a connection that would keep the process alive.
process.exit(await main(process.argv.slice(2)))
