import { ApiError, UnreachableError, type ProblemBody } from './errors.ts'

/** How a client reaches a gateway. */
export interface ClientOptions {
  /** The gateway's base URL, e.g. `http://127.0.0.1:8080`. */
  readonly url: string
  /** A bearer token (`conveyor token create`); without one, only an auth-off gateway answers. */
  readonly token?: string | undefined
  /** A `fetch` to use instead of the global one. */
  readonly fetch?: typeof fetch
  /** Extra headers sent with every request. */
  readonly headers?: Readonly<Record<string, string>>
}

/** One answer: the parsed body, and the headers (`ETag`, `Warning`). */
export interface Answer<T> {
  readonly status: number
  readonly body: T
  readonly headers: Headers
}

/** Request options a route method accepts. */
export interface RequestOptions {
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>
  readonly body?: unknown
  readonly headers?: Readonly<Record<string, string>>
  readonly signal?: AbortSignal
}

/** Fills `:param` segments of a route pattern, each URI-encoded. */
export function fillPath(pattern: string, params: Readonly<Record<string, string | number>>): string {
  return pattern.replace(/:([A-Za-z]+)/g, (_, name: string) => {
    const value = params[name]
    if (value === undefined) throw new TypeError(`missing path parameter ${name} for ${pattern}`)
    return encodeURIComponent(String(value))
  })
}

/** Sends requests to one gateway: JSON in and out, problem+json turned into an {@link ApiError}. */
export class Transport {
  readonly baseUrl: string
  readonly token: string | undefined
  readonly #fetch: typeof fetch
  readonly #headers: Readonly<Record<string, string>>

  constructor(options: ClientOptions) {
    this.baseUrl = options.url.replace(/\/+$/, '')
    this.token = options.token
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis)
    this.#headers = options.headers ?? {}
  }

  /** Headers every request carries (the token, when there is one). */
  headers(extra: Readonly<Record<string, string>> = {}): Record<string, string> {
    return {
      ...this.#headers,
      ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      ...extra,
    }
  }

  url(path: string, query?: RequestOptions['query']): string {
    const search = new URLSearchParams()
    for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined) search.set(key, String(value))
    const text = search.toString()
    return `${this.baseUrl}${path}${text ? `?${text}` : ''}`
  }

  /** A raw response (for streams); refused answers still throw. */
  async open(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const url = this.url(path, options.query)
    let response: Response
    try {
      response = await this.#fetch(url, {
        method,
        headers: this.headers({
          ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
          ...options.headers,
        }),
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
        ...(options.signal ? { signal: options.signal } : {}),
      })
    } catch (error) {
      if (options.signal?.aborted) throw error
      throw new UnreachableError(this.baseUrl, error)
    }
    if (!response.ok) {
      const text = await response.text().catch(() => '')
      let problem: ProblemBody | undefined
      try {
        problem = text ? (JSON.parse(text) as ProblemBody) : undefined
      } catch {
        problem = { type: 'about:blank', title: response.statusText, status: response.status, detail: text }
      }
      throw new ApiError(method, path, response.status, problem, response.headers.get('retry-after') ?? undefined)
    }
    return response
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<Answer<T>> {
    const response = await this.open(method, path, options)
    const text = await response.text()
    return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T, headers: response.headers }
  }
}
