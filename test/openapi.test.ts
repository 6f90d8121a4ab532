import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Validator } from '@seriousme/openapi-schema-validator'
import { buildOpenApi, STREAM_DOCS } from '../gateway/openapi.ts'
import { api, startSecuredGateway, startStack, type SecuredGateway, type Stack } from './harness.ts'

let stack: Stack
let secured: SecuredGateway
let viewer: string

beforeAll(async () => {
  stack = await startStack()
  secured = await startSecuredGateway(stack)
  viewer = await secured.token('viewer')
})
afterAll(async () => {
  await secured?.close()
  await stack?.close()
})

const METHODS = ['get', 'put', 'post', 'delete']

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.1, needs a token, and documents every route the router registers', async () => {
    expect((await api(secured.url, 'GET', '/openapi.json')).status).toBe(401)
    const reply = await api(secured.url, 'GET', '/openapi.json', undefined, { authorization: `Bearer ${viewer}` })
    expect(reply.status).toBe(200)
    const document = reply.body
    const validator = new Validator()
    const result = await validator.validate(document)
    expect(result.errors ?? []).toEqual([])
    expect(result.valid).toBe(true)
    expect(validator.version).toBe('3.1')

    const documented = new Set(
      Object.entries(document.paths as Record<string, Record<string, unknown>>).flatMap(([path, operations]) =>
        Object.keys(operations)
          .filter((method) => METHODS.includes(method))
          .map((method) => `${method.toUpperCase()} ${path.replace(/\{([A-Za-z]+)\}/g, ':$1')}`),
      ),
    )
    for (const route of [...secured.gateway.routes, ...Object.keys(STREAM_DOCS)])
      expect(documented, route).toContain(route)
    expect(document.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' })
  })

  it('names parameters, bodies from the TypeBox types, and the problem answers of each operation', async () => {
    const document = (await api(stack.url, 'GET', '/openapi.json')).body
    const put = document.paths['/resources/{type}/{name}'].put
    expect(put.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`)).toEqual([
      'path:type',
      'path:name',
      'header:If-Match',
    ])
    const body = put.requestBody.content['application/json'].schema
    expect(body.additionalProperties).toBe(false)
    expect(body.required).toEqual(expect.arrayContaining(['name', 'resource', 'spec']))
    expect(Object.keys(put.responses)).toEqual(
      expect.arrayContaining(['200', '400', '401', '403', '404', '409', '412', '413', '415', '429', '503']),
    )
    expect(put.responses['412'].content['application/problem+json'].schema).toEqual({
      $ref: '#/components/schemas/Problem',
    })
    const list = document.paths['/resources/{type}'].get
    expect(list.parameters.map((p: { name: string }) => p.name)).toEqual(['type', 'labelSelector', 'limit', 'continue'])
    // Public routes say so.
    expect(document.paths['/health'].get.security).toEqual([])
    expect(document.paths['/health'].get.responses['401']).toBeUndefined()
    const step = document.paths['/pipelines'].post.requestBody.content['application/json'].schema.properties.steps.items
    expect(step.properties.timeout.anyOf).toHaveLength(2)
  })

  it('fails to build when a route has no doc', () => {
    expect(() => buildOpenApi(['GET /health', 'GET /nosuch'], '0')).toThrow(/route GET \/nosuch has no OpenAPI doc/)
  })

  it('is shown at /docs from the package, with no token and nothing from another origin', async () => {
    const page = await fetch(`${secured.url}/docs`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toMatch(/^text\/html/)
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self'/)
    const html = await page.text()
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//)
    for (const asset of ['swagger-ui-bundle.js', 'swagger-ui.css', 'docs.js']) {
      const response = await fetch(`${secured.url}/docs/${asset}`)
      expect(response.status, asset).toBe(200)
      expect(response.headers.get('cache-control')).toMatch(/max-age/)
      expect((await response.arrayBuffer()).byteLength, asset).toBeGreaterThan(100)
    }
    expect((await fetch(`${secured.url}/docs/../package.json`)).status).toBe(404)
    expect((await fetch(`${secured.url}/docs/nosuch.js`)).status).toBe(404)
  })
})
