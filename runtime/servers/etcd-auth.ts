import { Etcd3, GRPCInvalidArgumentError } from 'etcd3'
import { ConveyorError } from '../errors.ts'
import { keys } from '../keys.ts'

/** etcd's answer to an anonymous call once auth is on. */
const authIsOn = (error: unknown): boolean =>
  error instanceof GRPCInvalidArgumentError && /user name is empty/.test(error.message)

/**
 * Makes etcd require credentials: creates `root` with `password` and the `root` role, then turns
 * auth on (once, on the first start: etcd keeps it in its data). When auth is already on, checks
 * that `root` signs in with `password`. Any member's endpoint will do; pass them all.
 */
export async function requireEtcdAuth(
  endpoints: readonly string[],
  root: { username: string; password: string },
): Promise<void> {
  const open = new Etcd3({ hosts: [...endpoints], dialTimeout: 5000 })
  try {
    let users: string[] | undefined
    try {
      users = (await open.getUsers()).map((user) => user.name)
    } catch (error) {
      if (!authIsOn(error)) throw error
    }
    if (users !== undefined) {
      // Auth is off: nobody's credentials matter yet, so set ours whatever was there.
      if (users.includes(root.username)) await open.user(root.username).setPassword(root.password)
      else await open.user(root.username).create(root.password)
      await open.user(root.username).addRole('root')
      await open.auth.authEnable()
    }
  } finally {
    open.close()
  }
  const signedIn = new Etcd3({ hosts: [...endpoints], dialTimeout: 5000, auth: root })
  try {
    await signedIn.get(keys.ping()).string()
  } catch (error) {
    throw new ConveyorError(
      'server-start-failed',
      `etcd at ${endpoints.join(',')} refuses the ${root.username} credentials of this data directory: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    )
  } finally {
    signedIn.close()
  }
}
