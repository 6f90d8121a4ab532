import { isIP } from 'node:net'
import { problem, type ApiReply } from './http.ts'

/** What a gateway lets browsers do: the origins beyond its own, and whether it listens on loopback only. */
export interface BrowserGuardOptions {
  /** Origins (`scheme://host[:port]`) allowed besides the gateway's own (`CONVEYOR_ALLOWED_ORIGINS`). */
  readonly allowedOrigins?: readonly string[]
  /** The address the gateway binds: on a loopback one, only loopback `Host` names are answered. */
  readonly bindHost: string
}

/** The head of a request as the guard sees it (lower-case header names). */
export interface GuardedHead {
  readonly method: string
  readonly headers: ReadonlyMap<string, string>
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]'])
/** Methods a browser may send across origins without asking first (a "simple" request). */
const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH'])

/** True for an address or name that only this machine reaches. */
export function isLoopbackHost(host: string): boolean {
  const name = host.toLowerCase()
  if (LOOPBACK_NAMES.has(name) || name.endsWith('.localhost')) return true
  const bare = name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name
  return isIP(bare) === 4 ? bare.startsWith('127.') : bare === '::1'
}

/** `Host` without its port: `[::1]:8080` → `[::1]`, `localhost:8080` → `localhost`. */
function hostName(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1)
  const colon = host.lastIndexOf(':')
  return colon > 0 ? host.slice(0, colon) : host
}

/** `scheme://host[:port]` in a comparable form, or undefined for anything that is not an origin. */
function normalOrigin(origin: string): string | undefined {
  try {
    const url = new URL(origin)
    return url.origin === 'null' ? undefined : url.origin
  } catch {
    return undefined
  }
}

/**
 * Keeps web pages from driving the API: a page on another origin is refused (its `Origin` is not
 * the gateway's own nor one allowed), a rebound DNS name is refused when the gateway listens on
 * loopback (its `Host` is not a loopback name), and a write must say `application/json`, which
 * no form or "simple" cross-origin request can send. Clients that are not browsers send no
 * `Origin` and pass.
 */
export class BrowserGuard {
  readonly #allowed: ReadonlySet<string>
  readonly #loopbackOnly: boolean

  constructor(options: BrowserGuardOptions) {
    this.#allowed = new Set(
      (options.allowedOrigins ?? []).map((origin) => normalOrigin(origin)).filter((o): o is string => !!o),
    )
    this.#loopbackOnly = isLoopbackHost(options.bindHost)
  }

  /** Why a request (HTTP, SSE or a WebSocket upgrade) is refused, or undefined when it may go on. */
  refusal(head: GuardedHead): ApiReply | undefined {
    const host = head.headers.get('host') ?? ''
    if (this.#loopbackOnly && !isLoopbackHost(hostName(host)))
      return problem(
        403,
        'host-not-allowed',
        `Host "${host}" is not a loopback name: a gateway listening on loopback answers only localhost, 127.0.0.1 or [::1] (a DNS rebinding attack sends another name)`,
        [{ path: 'headers/host', message: 'must be a loopback name or address' }],
      )
    const origin = head.headers.get('origin')
    if (origin !== undefined && !this.#originAllowed(origin, host))
      return problem(
        403,
        'origin-not-allowed',
        `Origin "${origin}" may not use this API: only the gateway's own origin and those in CONVEYOR_ALLOWED_ORIGINS may`,
        [{ path: 'headers/origin', message: 'is not an allowed origin' }],
      )
    return undefined
  }

  /** 415 for a write whose body is not declared JSON (a form, `text/plain`, or none). */
  contentTypeRefusal(head: GuardedHead, hasBody: boolean): ApiReply | undefined {
    if (!WRITE_METHODS.has(head.method) && !(head.method === 'DELETE' && hasBody)) return undefined
    const type = (head.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase()
    if (type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'))) return undefined
    return problem(
      415,
      'unsupported-media-type',
      `${head.method} needs Content-Type: application/json${type ? `, not ${type}` : ''}`,
      [{ path: 'headers/content-type', message: 'must be application/json' }],
    )
  }

  #originAllowed(origin: string, host: string): boolean {
    const normal = normalOrigin(origin)
    if (!normal) return false
    if (this.#allowed.has(normal)) return true
    // The gateway's own origin: the page it served itself (the web UI), on the name it was asked by.
    const url = new URL(normal)
    return url.host === host.toLowerCase() || (url.port === '' && url.hostname === hostName(host).toLowerCase())
  }
}
