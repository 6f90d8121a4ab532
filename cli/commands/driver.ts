import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { resolveConfig } from '../../runtime/config.ts'
import { runDriver } from '../../actors/driver/run.ts'
import { isDriverDefinition } from '../../actors/driver/define.ts'
import { untilSignal } from '../signals.ts'
import { BUILT_IN_DRIVERS } from './builtin-drivers.ts'
import type { ServeFlags } from './flags.ts'

/** `conveyor driver FILE | NAME`: runs the driver a module exports (default export or `driver`), or a built-in one by name. */
export async function driver(flags: ServeFlags, file: string | undefined): Promise<number> {
  if (!file)
    throw new TypeError(
      `usage: conveyor driver ./my-driver.ts (or a built-in driver: ${Object.keys(BUILT_IN_DRIVERS).join(', ')})`,
    )
  const builtIn = BUILT_IN_DRIVERS[file]
  if (builtIn) {
    const config = resolveConfig(flags)
    const handle = await runDriver(builtIn, {
      natsUrl: config.natsUrl,
      workspaceRoot: join(config.dataDir, 'workspaces'),
    })
    process.stdout.write(`Conveyor driver ${builtIn.name} running (built in)\n`)
    return await untilSignal(() => handle.close())
  }
  if (/\.[cm]?tsx?$/.test(file)) {
    // Running from the compiled dist/, a TypeScript driver file still needs the loader.
    const { register } = await import('tsx/esm/api')
    register()
  }
  const module = (await import(pathToFileURL(resolve(file)).href)) as { default?: unknown; driver?: unknown }
  const definition = module.default ?? module.driver
  if (!isDriverDefinition(definition))
    throw new TypeError(`${file} must export a driver made with defineDriver() as its default export`)
  const config = resolveConfig(flags)
  const handle = await runDriver(definition, {
    natsUrl: config.natsUrl,
    workspaceRoot: join(config.dataDir, 'workspaces'),
  })
  process.stdout.write(
    `Conveyor driver ${definition.name} running (${definition.resources.length > 0 ? `serves ${definition.resources.join(', ')} and its pipeline steps` : 'runs its pipeline steps'})\n`,
  )
  return await untilSignal(() => handle.close())
}
