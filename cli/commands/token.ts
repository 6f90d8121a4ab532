import { resolveConfig } from '../../runtime/config.ts'
import { Etcd3 } from 'etcd3'
import { etcdClientAuth } from '../../runtime/etcd-client-auth.ts'
import { TokenStore, type TokenInfo } from '../../runtime/token-store.ts'
import { parseTokenRequest } from '../../gateway/routes/tokens.ts'
import { call, type ClientFlags } from './client.ts'

/** Flags of `conveyor token …`. */
export interface TokenFlags extends ClientFlags {
  readonly role?: string | undefined
  readonly types?: string | undefined
  readonly driver?: string | undefined
  readonly expires?: string | undefined
  readonly description?: string | undefined
  /** Write to etcd directly (its endpoints from --etcd or CONVEYOR_ETCD_ENDPOINTS): the first admin token of a control plane. */
  readonly direct?: boolean | undefined
  readonly etcdEndpoints?: string | undefined
}

const out = (line: string): boolean => process.stdout.write(line + '\n')
const note = (line: string): boolean => process.stderr.write(line + '\n')

/** `conveyor token create|list|revoke`: through the API (an admin token), or with `--direct` against etcd. */
export async function token(
  flags: TokenFlags,
  verb: string | undefined,
  argument: string | undefined,
): Promise<number> {
  const direct = flags.direct ? await directStore(flags) : undefined
  try {
    if (verb === 'create') {
      const request = parseTokenRequest({
        role: flags.role,
        ...(flags.types ? { types: flags.types.split(',').map((type) => type.trim()) } : {}),
        ...(flags.driver ? { driver: flags.driver } : {}),
        ...(flags.expires ? { expiresIn: flags.expires } : {}),
        ...(flags.description ? { description: flags.description } : {}),
      })
      const created: TokenInfo & { token: string } = direct
        ? await direct.store.create(request).then(({ token, info }) => ({ ...info, token }))
        : await call(flags, 'POST', '/tokens', {
            role: request.role,
            ...(request.types ? { types: request.types } : {}),
            ...(request.driver ? { driver: request.driver } : {}),
            ...(flags.expires ? { expiresIn: flags.expires } : {}),
            ...(request.description ? { description: request.description } : {}),
          })
      if (flags.json) out(JSON.stringify(created, null, 2))
      else {
        out(created.token)
        note(
          `token ${created.id}: role ${created.role}${created.types ? `, types ${created.types.join(',')}` : ''}${created.expiresAt ? `, expires ${created.expiresAt}` : ''}; shown once, keep it safe`,
        )
      }
      return 0
    }
    if (verb === 'list') {
      const items: TokenInfo[] = direct ? await direct.store.list() : (await call(flags, 'GET', '/tokens')).items
      if (flags.json) {
        out(JSON.stringify(items, null, 2))
        return 0
      }
      out(['ID', 'ROLE', 'TYPES', 'DRIVER', 'EXPIRES', 'DESCRIPTION'].join('\t'))
      for (const item of items)
        out(
          [
            item.id,
            item.role,
            item.types?.join(',') ?? '*',
            item.driver ?? '',
            item.expiresAt ?? 'never',
            item.description ?? '',
          ].join('\t'),
        )
      return 0
    }
    if (verb === 'revoke') {
      if (!argument) throw new TypeError('usage: conveyor token revoke ID')
      if (direct) {
        if (!(await direct.store.revoke(argument))) throw new TypeError(`no token with id ${argument}`)
      } else await call(flags, 'DELETE', `/tokens/${encodeURIComponent(argument)}`)
      out(`revoked ${argument}`)
      return 0
    }
    throw new TypeError(
      'usage: conveyor token create --role admin|operator|viewer|driver [--types T1,T2] [--driver NAME] [--expires 30d] [--description TEXT] [--direct] | token list | token revoke ID',
    )
  } finally {
    direct?.close()
  }
}

async function directStore(flags: TokenFlags): Promise<{ store: TokenStore; close: () => void }> {
  const config = resolveConfig({ etcdEndpoints: flags.etcdEndpoints })
  const etcd = new Etcd3({ hosts: [...config.etcdEndpoints], ...etcdClientAuth(config.etcdAuth), dialTimeout: 5000 })
  return { store: new TokenStore(etcd), close: () => etcd.close() }
}
