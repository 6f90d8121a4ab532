import type { ApiRequest, Handler } from './http.ts'

export interface RouteOptions {
  /** A body limit below the gateway's, for routes whose bodies are small by nature. */
  readonly maxBodyBytes?: number
}

interface Route {
  readonly method: string
  /** As registered, e.g. `/resources/:type` (what access policies are keyed by). */
  readonly pattern: string
  readonly segments: readonly string[]
  readonly handler: Handler
  readonly options: RouteOptions
}

export type RouteMatch =
  | {
      readonly kind: 'found'
      /** `METHOD /pattern` of the route that matched. */
      readonly route: string
      readonly handler: Handler
      readonly params: Record<string, string>
      readonly options: RouteOptions
    }
  | { readonly kind: 'method-not-allowed'; readonly allowed: readonly string[] }
  | { readonly kind: 'not-found' }

/** Path routing with `:param` segments; a trailing slash is ignored, as Conveyor's routes do. */
export class Router {
  readonly #routes: Route[] = []

  /** Every route as `METHOD /pattern`, in the order added. */
  routes(): string[] {
    return this.#routes.map((route) => `${route.method} ${route.pattern}`)
  }

  add(method: string, pattern: string, handler: Handler, options: RouteOptions = {}): this {
    this.#routes.push({ method, pattern, segments: split(pattern), handler, options })
    return this
  }

  match(method: string, path: string): RouteMatch {
    const segments = split(path)
    const allowed: string[] = []
    for (const route of this.#routes) {
      const params = matchSegments(route.segments, segments)
      if (!params) continue
      if (route.method === method || (method === 'HEAD' && route.method === 'GET'))
        return {
          kind: 'found',
          route: `${route.method} ${route.pattern}`,
          handler: route.handler,
          params,
          options: route.options,
        }
      allowed.push(route.method)
    }
    return allowed.length > 0 ? { kind: 'method-not-allowed', allowed } : { kind: 'not-found' }
  }
}

const split = (path: string): string[] => path.split('/').filter((s) => s.length > 0)

function matchSegments(pattern: readonly string[], path: readonly string[]): Record<string, string> | undefined {
  if (pattern.length !== path.length) return undefined
  const params: Record<string, string> = {}
  for (let i = 0; i < pattern.length; i++) {
    const expected = pattern[i]!
    const actual = path[i]!
    if (expected.startsWith(':')) {
      try {
        params[expected.slice(1)] = decodeURIComponent(actual)
      } catch {
        return undefined
      }
    } else if (expected !== actual) return undefined
  }
  return params
}

export type { ApiRequest }
