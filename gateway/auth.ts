import { ConveyorError } from '../runtime/errors.ts'
import type { Role, TokenInfo, TokenStore } from '../runtime/token-store.ts'
import { unavailable } from '../runtime/errors.ts'
import { isServerUnavailable } from '../runtime/connections.ts'
import type { RoutePolicy } from './access-policy.ts'
import type { ApiRequest } from './http.ts'

/** What a route needs: nothing (`public`), reading, writing, managing tokens, or being a driver. */
export type Access = 'public' | 'read' | 'write' | 'admin' | 'driver'

/** Who is calling: a token's holder, or everyone when auth is off (loopback only). */
export interface Principal {
  readonly id: string
  readonly role: Role
  /** Resource types the caller is limited to; undefined: every type. */
  readonly types?: readonly string[]
  readonly driver?: string
}

/** The caller when the gateway runs without auth (`--no-auth`, loopback only): an admin. */
export const ANONYMOUS: Principal = { id: 'anonymous', role: 'admin' }

const GRANTS: Readonly<Record<Role, ReadonlySet<Access>>> = {
  admin: new Set(['public', 'read', 'write', 'admin', 'driver']),
  operator: new Set(['public', 'read', 'write']),
  viewer: new Set(['public', 'read']),
  driver: new Set(['public', 'driver']),
}

/** The subprotocol a browser offers to carry its token on a WebSocket upgrade: `conveyor.bearer.{token}`. */
export const BEARER_SUBPROTOCOL = 'conveyor.bearer.'
/** The subprotocol the gateway answers with (never the one carrying the token). */
export const API_SUBPROTOCOL = 'conveyor.v1'

/** The token a request carries: `Authorization: Bearer …`, or on a WebSocket upgrade the bearer subprotocol. */
export function presentedToken(headers: ReadonlyMap<string, string>): string | undefined {
  const authorization = headers.get('authorization')
  if (authorization) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
    return match ? match[1] : ''
  }
  for (const offered of (headers.get('sec-websocket-protocol') ?? '').split(',')) {
    const protocol = offered.trim()
    if (protocol.startsWith(BEARER_SUBPROTOCOL)) return protocol.slice(BEARER_SUBPROTOCOL.length)
  }
  return undefined
}

/** The subprotocol to answer an upgrade with: ours when offered, else none (never the one with the token). */
export function chooseSubprotocol(offered: string | undefined): string {
  const protocols = (offered ?? '').split(',').map((protocol) => protocol.trim())
  return protocols.includes(API_SUBPROTOCOL) ? API_SUBPROTOCOL : ''
}

/** Whom per-client limits count against: the token, or the address when there is none (auth off). */
export function clientKey(principal: Principal | undefined, address: string): string {
  return principal && principal !== ANONYMOUS ? `token:${principal.id}` : address
}

const unauthorized = (detail: string): ConveyorError =>
  new ConveyorError('unauthorized', detail, { kind: 'unauthorized' })

const forbidden = (code: string, detail: string): ConveyorError =>
  new ConveyorError(code, detail, { kind: 'forbidden' })

/**
 * Turns a request's token into a principal and decides what it may do. With no token store the
 * gateway runs without auth and every caller is {@link ANONYMOUS}.
 */
export class Authenticator {
  readonly #tokens: TokenStore | undefined

  constructor(tokens: TokenStore | undefined) {
    this.#tokens = tokens
  }

  get enabled(): boolean {
    return this.#tokens !== undefined
  }

  /** True when the request's token verified a moment ago: checking it again costs nothing. */
  knownGood(headers: ReadonlyMap<string, string>): boolean {
    const token = presentedToken(headers)
    return !this.#tokens || (token !== undefined && this.#tokens.recentlyVerified(token))
  }

  /** The caller, or a 401 when the token is missing, malformed, unknown, revoked or expired. */
  async authenticate(headers: ReadonlyMap<string, string>): Promise<Principal> {
    if (!this.#tokens) return ANONYMOUS
    const token = presentedToken(headers)
    if (token === undefined)
      throw unauthorized(
        'this route needs a token: send Authorization: Bearer TOKEN (conveyor up writes an admin token to $CONVEYOR_DATA_DIR/admin.token; conveyor token create makes more)',
      )
    let info: TokenInfo | undefined
    try {
      info = await this.#tokens.verify(token)
    } catch (error) {
      if (isServerUnavailable(error)) throw unavailable('etcd is unavailable: tokens cannot be checked; retry shortly')
      throw error
    }
    if (!info) throw unauthorized('the token is not valid: unknown, revoked, expired or mistyped')
    return {
      id: info.id,
      role: info.role,
      ...(info.types ? { types: info.types } : {}),
      ...(info.driver ? { driver: info.driver } : {}),
    }
  }

  /**
   * Admits a call under its route's policy: 401 without a valid token, 403 when the role or the
   * token's types do not allow it. A public route takes a caller without a token (undefined).
   */
  async admit(policy: RoutePolicy, request: ApiRequest, what: string): Promise<Principal | undefined> {
    if (policy.access === 'public') {
      if (!this.enabled || presentedToken(request.headers) === undefined) return this.enabled ? undefined : ANONYMOUS
      return await this.authenticate(request.headers).catch(() => undefined)
    }
    const principal = await this.authenticate(request.headers)
    this.authorize(principal, policy.access, what)
    if (!principal.types || policy.scope === 'shared') return principal
    const type = policy.scope === 'all-types' ? undefined : await policy.scope(request)
    if (type === undefined) this.authorizeAllTypes(principal, what)
    else this.authorizeType(principal, type)
    return principal
  }

  /** Refuses (403) a call the principal's role does not allow. */
  authorize(principal: Principal, access: Access, what: string): void {
    if (GRANTS[principal.role].has(access)) return
    throw forbidden(
      'forbidden',
      `a ${principal.role} token may not ${what} (it needs ${access === 'admin' ? 'an admin' : access === 'write' ? 'an operator or admin' : access === 'driver' ? 'a driver or admin' : 'a viewer, operator or admin'} token)`,
    )
  }

  /** Refuses (403) a resource type outside the principal's types. */
  authorizeType(principal: Principal, type: string): void {
    if (!principal.types || principal.types.includes(type)) return
    throw forbidden(
      'type-not-allowed',
      `this token is limited to the types ${principal.types.join(', ')}; ${JSON.stringify(type)} is not one of them`,
    )
  }

  /** Refuses (403) a route that spans every type when the principal is limited to some. */
  authorizeAllTypes(principal: Principal, what: string): void {
    if (!principal.types) return
    throw forbidden(
      'type-not-allowed',
      `this token is limited to the types ${principal.types.join(', ')} and may not ${what}, which spans every type`,
    )
  }
}
