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

/** Checks a path parameter's value before any handler of a route with it runs (it throws to refuse). */
export type ParamCheck = (value: string, request: ApiRequest) => Promise<void> | void

/** Path routing with `:param` segments; a trailing slash is ignored, as Conveyor's routes do. */
export class Router {
  readonly #routes: Route[] = []
  readonly #checks = new Map<string, ParamCheck>()

  /**
   * Runs `check` on the parameter's value before the handler of every route that has it, e.g. so
   * that every route of an unknown resource type answers 404 (as Express's `router.param`).
   */
  param(name: string, check: ParamCheck): this {
    this.#checks.set(name, check)
    return this
  }

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
          handler: this.#checked(route, params),
          params,
          options: route.options,
        }
      allowed.push(route.method)
    }
    return allowed.length > 0 ? { kind: 'method-not-allowed', allowed } : { kind: 'not-found' }
  }

  #checked(route: Route, params: Record<string, string>): Handler {
    const checks = Object.keys(params).flatMap((name) => {
      const check = this.#checks.get(name)
      return check ? [[name, check] as const] : []
    })
    if (checks.length === 0) return route.handler
    return async (request) => {
      for (const [name, check] of checks) await check(params[name]!, request)
      return route.handler(request)
    }
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
