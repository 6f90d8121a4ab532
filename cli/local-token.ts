import { writeFile, readFile, mkdir, chmod } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { TokenStore } from '../runtime/token-store.ts'

/**
 * The admin token of a local instance, kept in `path` (mode 0600): made on the first start, and
 * made again when the one in the file no longer verifies (its etcd data was wiped, or it was
 * revoked). Returns the token and whether it is new.
 */
export async function ensureLocalAdminToken(
  tokens: TokenStore,
  path: string,
): Promise<{ token: string; created: boolean }> {
  const existing = await readFile(path, 'utf8').then(
    (text) => text.trim(),
    () => '',
  )
  if (existing && (await tokens.verify(existing))?.role === 'admin') return { token: existing, created: false }
  const { token } = await tokens.create({ role: 'admin', description: 'local admin token made by conveyor up' })
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  await writeFile(path, token + '\n', { mode: 0o600 })
  // A file that existed keeps its mode on write: make sure only its owner can read it.
  await chmod(path, 0o600)
  return { token, created: true }
}
