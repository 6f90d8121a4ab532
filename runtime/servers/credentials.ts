import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CREDENTIAL_ENV, CREDENTIALS_FILE, type LocalCredentialsFile } from '../config.ts'

/** The credentials of the servers `conveyor up` (or `conveyor cluster`, or a test) starts. */
export type LocalCredentials = LocalCredentialsFile

const secret = (): string => randomBytes(24).toString('base64url')

/** Fresh random credentials: the control plane's NATS user, the route user between NATS nodes, etcd's `root`. */
export function newCredentials(): LocalCredentials {
  return {
    nats: { user: 'conveyor', password: secret() },
    natsRoutes: { user: 'route', password: secret() },
    etcd: { username: 'root', password: secret() },
  }
}

function isCredentials(value: unknown): value is LocalCredentials {
  const record = value as Partial<LocalCredentials> | undefined
  return (
    typeof record?.nats?.user === 'string' &&
    typeof record.nats.password === 'string' &&
    typeof record.natsRoutes?.password === 'string' &&
    typeof record.etcd?.username === 'string' &&
    typeof record.etcd.password === 'string'
  )
}

/**
 * The credentials kept in `dataDir/credentials.json`, made (random) on the first start and reused
 * on later ones. The directory is 0700 and the file 0600 (tightened when found looser).
 */
export async function loadOrCreateCredentials(dataDir: string): Promise<LocalCredentials> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  await chmod(dataDir, 0o700)
  const file = join(dataDir, CREDENTIALS_FILE)
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined
    throw error
  })
  if (text !== undefined) {
    const stored: unknown = JSON.parse(text)
    if (!isCredentials(stored)) throw new TypeError(`${file} does not hold the local servers' credentials`)
    await chmod(file, 0o600)
    return stored
  }
  const made = newCredentials()
  // `wx`: two processes starting at once must not both write; the loser reads the winner's.
  try {
    await writeFile(file, JSON.stringify(made, null, 2) + '\n', { mode: 0o600, flag: 'wx' })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return await loadOrCreateCredentials(dataDir)
    throw error
  }
  return made
}

/** The environment that gives a child `conveyor` process the control plane's credentials. */
export function credentialsEnv(credentials: LocalCredentials): Record<string, string> {
  return {
    [CREDENTIAL_ENV.natsUser]: credentials.nats.user,
    [CREDENTIAL_ENV.natsPassword]: credentials.nats.password,
    [CREDENTIAL_ENV.etcdUser]: credentials.etcd.username,
    [CREDENTIAL_ENV.etcdPassword]: credentials.etcd.password,
  }
}
