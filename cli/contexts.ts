import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import YAML from 'yaml'
import { ADMIN_TOKEN_FILE, clientEnvironment } from '../runtime/config.ts'

/** One context of the config file: a gateway and how to sign in to it. */
export interface Context {
  readonly name: string
  readonly server: string
  readonly token?: string
  /** A file holding the token (e.g. a local instance's admin.token). */
  readonly tokenFile?: string
}

/** `$XDG_CONFIG_HOME/conveyor/config.yaml`, as kubeconfig: contexts and the current one. */
export interface ConfigFile {
  readonly currentContext?: string
  readonly contexts: readonly Context[]
}

/** Where a client command talks to, and with what token; `source` says where each came from. */
export interface Target {
  readonly url: string
  readonly token: string | undefined
  readonly context: string | undefined
  readonly tokenSource: string
}

/** What the user gave on the command line. */
export interface TargetFlags {
  readonly api?: string | undefined
  readonly token?: string | undefined
  readonly context?: string | undefined
}

const DEFAULT_URL = 'http://127.0.0.1:8080'

function parseConfig(text: string, path: string): ConfigFile {
  const raw = (YAML.parse(text) ?? {}) as Record<string, unknown>
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new TypeError(`${path}: must be a mapping`)
  const contexts = (raw.contexts ?? []) as unknown
  if (!Array.isArray(contexts)) throw new TypeError(`${path}: contexts must be a list`)
  for (const [i, context] of contexts.entries()) {
    const c = context as Partial<Context> | null
    if (!c || typeof c.name !== 'string' || typeof c.server !== 'string')
      throw new TypeError(`${path}: contexts[${i}] needs a name and a server`)
  }
  const current = raw['current-context']
  return {
    ...(typeof current === 'string' ? { currentContext: current } : {}),
    contexts: contexts as Context[],
  }
}

/** The config file, or an empty one when it does not exist. */
export function readConfigFile(path = clientEnvironment().configFile): ConfigFile {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch {
    return { contexts: [] }
  }
  return parseConfig(text, path)
}

export async function writeConfigFile(config: ConfigFile, path = clientEnvironment().configFile): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  const doc = {
    ...(config.currentContext ? { 'current-context': config.currentContext } : {}),
    contexts: config.contexts,
  }
  await writeFile(path, YAML.stringify(doc), { mode: 0o600 })
  // It holds tokens: only its owner may read it, even when it existed before.
  await chmod(path, 0o600)
}

function readToken(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim() || undefined
  } catch {
    return undefined
  }
}

/**
 * Resolves the gateway and token of a client command: flags, then the environment
 * (`CONVEYOR_API_URL`, `CONVEYOR_TOKEN`), then the config file's context (`--context`,
 * `CONVEYOR_CONTEXT`, or its current context), then the local instance (`http://127.0.0.1:8080`
 * and the admin token `conveyor up` keeps in `$CONVEYOR_DATA_DIR`).
 */
export function resolveTarget(flags: TargetFlags = {}): Target {
  const env = clientEnvironment()
  const config = readConfigFile(env.configFile)
  const wanted = flags.context ?? env.context ?? config.currentContext
  const context = wanted === undefined ? undefined : config.contexts.find((c) => c.name === wanted)
  if (wanted !== undefined && !context && (flags.context ?? env.context) !== undefined)
    throw new TypeError(
      `no context ${JSON.stringify(wanted)} in ${env.configFile}: add it with conveyor config set-context ${wanted} --server URL`,
    )
  const url = (flags.api ?? env.apiUrl ?? context?.server ?? DEFAULT_URL).replace(/\/+$/, '')
  const contextToken = context?.token ?? (context?.tokenFile ? readToken(context.tokenFile) : undefined)
  const localToken = readToken(join(env.dataDir, ADMIN_TOKEN_FILE))
  const [token, tokenSource] = flags.token
    ? [flags.token, '--token']
    : env.token
      ? [env.token, 'CONVEYOR_TOKEN']
      : contextToken
        ? [contextToken, `context ${context!.name}`]
        : localToken
          ? [localToken, join(env.dataDir, ADMIN_TOKEN_FILE)]
          : [undefined, 'none']
  return { url, token, context: context?.name, tokenSource }
}
