import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { ConveyorError } from '../runtime/errors.ts'
import { testSwitches } from '../runtime/config.ts'

type Uws = typeof import('uWebSockets.js')

let loaded: Uws | undefined

/**
 * Loads uWebSockets.js and refuses its slow JS fallback: the package silently falls back when no
 * native binary matches this Node.js, so check for the binary first and fail loudly instead.
 */
export async function loadUws(): Promise<Uws> {
  if (loaded) return loaded
  const require = createRequire(import.meta.url)
  const root = dirname(dirname(require.resolve('uWebSockets.js')))
  const binary = join(root, 'binaries', `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`)
  if (!existsSync(binary) || testSwitches.uwsFallback()) {
    throw new ConveyorError(
      'uws-native-missing',
      `uWebSockets.js has no native build for Node.js ${process.version} (${process.platform}-${process.arch}, ABI ${process.versions.modules}); use Node.js 20`,
    )
  }
  const module = (await import('uWebSockets.js')) as Uws & { default?: Uws }
  loaded = module.default ?? module
  return loaded
}
