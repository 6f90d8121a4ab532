import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Etcd3 } from 'etcd3'
import { LRUCache } from 'lru-cache'
import { keys } from './keys.ts'
import { DriverIdentities } from './driver-identities.ts'
import { readKeys, readPrefix } from './etcd-ops.ts'
import { ConveyorError } from './errors.ts'

/** What a token may do: `admin` everything, `operator` write, `viewer` read, `driver` what a driver needs. */
export type Role = 'admin' | 'operator' | 'viewer' | 'driver'
export const ROLES: readonly Role[] = ['admin', 'operator', 'viewer', 'driver']

/** A token as stored and listed: never its secret, only the secret's hash (not listed either). */
export interface TokenInfo {
  readonly id: string
  readonly role: Role
  /** Resource types the token is limited to; absent: every type. */
  readonly types?: readonly string[]
  /** The driver a `driver` token speaks for. */
  readonly driver?: string
  readonly description?: string
  readonly createdAt: string
  /** ISO time after which the token is refused; absent: it never expires. */
  readonly expiresAt?: string
}

interface StoredToken extends TokenInfo {
  /** SHA-256 of the secret, hex. */
  readonly hash: string
}

/** What a caller asks for when it makes a token. */
export interface TokenRequest {
  readonly role: Role
  readonly types?: readonly string[]
  readonly driver?: string
  readonly description?: string
  /** Milliseconds from now until it expires. */
  readonly ttlMs?: number
}

const PREFIX = 'cvt'
const TOKEN = /^cvt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/
/** How long a verified (or refused) token is remembered: a revocation reaches every gateway within it. */
export const TOKEN_CACHE_MS = 5000

/** The secret part of a well-formed token (`cvt_{id}_{secret}`). */
export function secretOf(token: string): string | undefined {
  return TOKEN.exec(token)?.[2]
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest()

/**
 * API tokens in etcd: random, shown once, stored as a hash, expiring and revocable. A token reads
 * `cvt_{id}_{secret}`: the id finds the record, the secret proves the holder.
 */
export class TokenStore {
  readonly #etcd: Etcd3
  readonly #cache = new LRUCache<string, { stored: StoredToken | null }>({ max: 10_000, ttl: TOKEN_CACHE_MS })
  /** Whole tokens that verified within the cache time. */
  readonly #verifiedSecrets = new LRUCache<string, true>({ max: 10_000, ttl: TOKEN_CACHE_MS })

  constructor(etcd: Etcd3) {
    this.#etcd = etcd
  }

  /** Makes a token; the returned `token` is the only copy of its secret. */
  async create(request: TokenRequest): Promise<{ token: string; info: TokenInfo }> {
    const id = randomBytes(8).toString('hex')
    const secret = randomBytes(32).toString('base64url')
    const now = Date.now()
    const info: TokenInfo = {
      id,
      role: request.role,
      ...(request.types && request.types.length > 0 ? { types: [...request.types] } : {}),
      ...(request.driver ? { driver: request.driver } : {}),
      ...(request.description ? { description: request.description } : {}),
      createdAt: new Date(now).toISOString(),
      ...(request.ttlMs !== undefined ? { expiresAt: new Date(now + request.ttlMs).toISOString() } : {}),
    }
    const stored: StoredToken = { ...info, hash: sha256(secret).toString('hex') }
    await this.#etcd.put(keys.token(id)).value(JSON.stringify(stored))
    return { token: `${PREFIX}_${id}_${secret}`, info }
  }

  /** Every token's info, newest last. */
  async list(): Promise<TokenInfo[]> {
    const { values } = await readPrefix(this.#etcd, keys.tokens())
    return values
      .map((value) => publicInfo(JSON.parse(value.value) as StoredToken))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
  }

  /** Removes a token, and the driver identities issued to it; false when there was none with that id. */
  async revoke(id: string): Promise<boolean> {
    const deleted = await this.#etcd.delete().key(keys.token(id)).exec()
    await new DriverIdentities(this.#etcd).revokeToken(id)
    this.#cache.delete(id)
    this.#verifiedSecrets.clear()
    return Number(deleted.deleted) > 0
  }

  /** True when `token` verified a moment ago (answered from memory, no etcd read): such a caller is never throttled as a guesser. */
  recentlyVerified(token: string): boolean {
    const parts = TOKEN.exec(token)
    return !!parts && !!this.#cache.get(parts[1]!)?.stored && this.#verifiedSecrets.has(token)
  }

  /** The token's info when it is genuine and current; undefined otherwise (unknown, revoked, expired, forged). */
  async verify(token: string): Promise<TokenInfo | undefined> {
    const parts = TOKEN.exec(token)
    if (!parts) return undefined
    const [, id, secret] = parts as unknown as [string, string, string]
    let cached = this.#cache.get(id)
    if (!cached) {
      const { values } = await readKeys(this.#etcd, [keys.token(id)])
      cached = { stored: values[0] ? (JSON.parse(values[0].value) as StoredToken) : null }
      this.#cache.set(id, cached)
    }
    const stored = cached.stored
    if (!stored) return undefined
    const expected = Buffer.from(stored.hash, 'hex')
    const actual = sha256(secret)
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) return undefined
    if (stored.expiresAt && Date.parse(stored.expiresAt) <= Date.now()) return undefined
    this.#verifiedSecrets.set(token, true)
    return publicInfo(stored)
  }
}

function publicInfo(stored: StoredToken): TokenInfo {
  const { hash: _hash, ...info } = stored
  return info
}

/** A role named by a user, or a 400 that lists the roles. */
export function parseRole(value: unknown, path = 'role'): Role {
  if (typeof value === 'string' && (ROLES as readonly string[]).includes(value)) return value as Role
  throw new ConveyorError('invalid', `${path} must be one of ${ROLES.join(', ')}`, {
    kind: 'invalid',
    errors: [{ path, message: `must be one of ${ROLES.join(', ')}` }],
  })
}
