import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { Router } from '../router.ts'
import { buildOpenApi } from '../openapi.ts'
import { DOCS_PAGE } from '../docs-page.ts'

/** The Swagger UI files /docs serves, from the swagger-ui-dist package (nothing from a CDN). */
const ASSETS: Readonly<Record<string, string>> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'docs.js': 'text/javascript; charset=utf-8',
}
const assetDir = (): string => dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'))
const CACHE = { 'Cache-Control': 'public, max-age=3600' }

/** `GET /openapi.json` (generated from the router, once) and `GET /docs` (an API reference page). */
export function registerOpenApiRoutes(router: Router, version: string): void {
  let document: Record<string, unknown> | undefined
  const cached = new Map<string, Buffer>()
  router
    .add('GET', '/openapi.json', () => {
      // Built on first use: every route is registered by then.
      document ??= buildOpenApi(router.routes(), version)
      return { status: 200, body: document }
    })
    .add('GET', '/docs', () => ({
      status: 200,
      body: DOCS_PAGE.html,
      headers: { 'Content-Type': 'text/html; charset=utf-8', 'Content-Security-Policy': DOCS_PAGE.csp, ...CACHE },
    }))
    .add('GET', '/docs/:asset', async (request) => {
      const asset = request.params.asset ?? ''
      const type = ASSETS[asset]
      if (!type)
        return {
          status: 404,
          body: {
            type: 'urn:conveyor:problem:not-found',
            title: 'Not Found',
            status: 404,
            detail: `no asset ${asset}`,
          },
          headers: { 'Content-Type': 'application/problem+json' },
        }
      let body = cached.get(asset)
      if (!body) {
        body = asset === 'docs.js' ? Buffer.from(DOCS_PAGE.script) : await readFile(join(assetDir(), asset))
        cached.set(asset, body)
      }
      return { status: 200, body, headers: { 'Content-Type': type, ...CACHE } }
    })
}
