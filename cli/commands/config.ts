import { clientEnvironment } from '../../runtime/config.ts'
import { readConfigFile, resolveTarget, writeConfigFile, type Context } from '../contexts.ts'
import { out, table } from '../output.ts'

/** `conveyor config get-contexts`: every context, the current one starred. */
export function getContexts(): number {
  const config = readConfigFile()
  if (config.contexts.length === 0) {
    out(`No contexts in ${clientEnvironment().configFile}: add one with conveyor config set-context NAME --server URL`)
    return 0
  }
  for (const line of table(
    ['CURRENT', 'NAME', 'SERVER', 'TOKEN'],
    config.contexts.map((c) => [
      c.name === config.currentContext ? '*' : '',
      c.name,
      c.server,
      c.token ? '(inline)' : c.tokenFile ? c.tokenFile : '<none>',
    ]),
  ))
    out(line)
  return 0
}

/** `conveyor config current-context`: the context client commands use now, and where their server and token come from. */
export function currentContext(flags: { api?: string; token?: string; context?: string }): number {
  const target = resolveTarget(flags)
  out(`${target.context ?? '<none>'}  ${target.url}  (token: ${target.tokenSource})`)
  return 0
}

/** `conveyor config set-context NAME --server URL [--token T | --token-file F] [--use]`. */
export async function setContext(
  name: string,
  flags: { server?: string; token?: string; tokenFile?: string; use?: boolean },
): Promise<number> {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name))
    throw new TypeError(`context name ${JSON.stringify(name)}: 1-64 letters, digits, '.', '_' or '-'`)
  if (flags.token && flags.tokenFile) throw new TypeError('give --token or --token-file, not both')
  const config = readConfigFile()
  const existing = config.contexts.find((c) => c.name === name)
  const server = flags.server ?? existing?.server
  if (!server) throw new TypeError(`context ${name} is new: give its --server URL`)
  if (!/^https?:\/\/[^\s]+$/.test(server))
    throw new TypeError(`--server must be an http(s) URL, got ${JSON.stringify(server)}`)
  const context: Context = {
    name,
    server,
    ...(flags.token ? { token: flags.token } : flags.tokenFile ? {} : existing?.token ? { token: existing.token } : {}),
    ...(flags.tokenFile
      ? { tokenFile: flags.tokenFile }
      : flags.token
        ? {}
        : existing?.tokenFile
          ? { tokenFile: existing.tokenFile }
          : {}),
  }
  const contexts = existing
    ? config.contexts.map((c) => (c.name === name ? context : c))
    : [...config.contexts, context]
  const current = flags.use || !config.currentContext ? name : config.currentContext
  await writeConfigFile({ currentContext: current, contexts })
  out(`context ${name} ${existing ? 'configured' : 'created'}${current === name ? ' (current)' : ''}`)
  return 0
}

/** `conveyor config use-context NAME`. */
export async function useContext(name: string): Promise<number> {
  const config = readConfigFile()
  if (!config.contexts.some((c) => c.name === name))
    throw new TypeError(
      `no context ${name}: the contexts are ${config.contexts.map((c) => c.name).join(', ') || 'none'}`,
    )
  await writeConfigFile({ ...config, currentContext: name })
  out(`switched to context ${name}`)
  return 0
}

/** `conveyor config delete-context NAME`. */
export async function deleteContext(name: string): Promise<number> {
  const config = readConfigFile()
  if (!config.contexts.some((c) => c.name === name)) throw new TypeError(`no context ${name}`)
  const contexts = config.contexts.filter((c) => c.name !== name)
  const { currentContext: _, ...rest } = config
  await writeConfigFile({ ...(config.currentContext === name ? rest : config), contexts })
  out(`context ${name} deleted`)
  return 0
}
