import { ResourceInput } from '../../definitions/api-types.ts'
import { compileInput } from '../../definitions/validate.ts'
import { invalid } from '../../runtime/errors.ts'
import type { LabelSelector, ResourceStore } from '../../runtime/resource-store.ts'
import { parseJson, type ApiRequest } from '../http.ts'
import type { Router } from '../router.ts'
import { readsRedacted, resourceFor } from '../secret-redaction.ts'
import { redactResource } from '../../definitions/secret-fields.ts'
import {
  conditionally,
  nameParam,
  objectReply,
  positiveIntegerQuery,
  withPathDefaults,
  writeCondition,
} from './common.ts'

const parseResource = compileInput(ResourceInput, 'resource')

/** `a=b,c!=d,e,!f`: equality, inequality, existence and absence, all of which must hold. */
export function parseLabelSelector(text: string): LabelSelector {
  const tests: ((labels: Readonly<Record<string, string>>) => boolean)[] = []
  for (const raw of text.split(',')) {
    const term = raw.trim()
    if (term === '') continue
    const match = /^(!?)([A-Za-z0-9_./-]+)(?:\s*(==|=|!=)\s*([A-Za-z0-9_.-]*))?$/.exec(term)
    if (!match)
      throw invalid(`labelSelector term ${JSON.stringify(term)} is not key, !key, key=value or key!=value`, [
        { path: '?labelSelector', message: `cannot parse ${JSON.stringify(term)}` },
      ])
    const [, not, key, op, value] = match as unknown as [string, string, string, string | undefined, string | undefined]
    if (op === undefined) tests.push(not ? (l) => !Object.hasOwn(l, key) : (l) => Object.hasOwn(l, key))
    else if (not)
      throw invalid(`labelSelector term ${JSON.stringify(term)} mixes ! with an operator`, [
        { path: '?labelSelector', message: `cannot parse ${JSON.stringify(term)}` },
      ])
    else if (op === '!=') tests.push((l) => !Object.hasOwn(l, key) || l[key] !== value)
    else tests.push((l) => Object.hasOwn(l, key) && l[key] === value)
  }
  return (labels) => tests.every((t) => t(labels))
}

export function registerResourceRoutes(router: Router, resources: ResourceStore, beforeWrite: () => void): void {
  const typeAndName = (request: ApiRequest): [string, string] => [
    nameParam(request, 'type'),
    nameParam(request, 'name'),
  ]
  router
    .add('POST', '/resources', async (request) => {
      const input = parseResource(parseJson(request.body))
      beforeWrite()
      return objectReply(201, await resources.create(input))
    })
    .add('GET', '/resources', () => {
      throw invalid('a resource type is required: GET /resources/:type', [{ path: ':type', message: 'is required' }])
    })
    .add('GET', '/resources/:type', async (request) => {
      const type = nameParam(request, 'type')
      const selector = request.query.get('labelSelector')
      const after = request.query.get('continue')
      const limit = positiveIntegerQuery(request, 'limit', 1000)
      const page = await resources.list(type, {
        ...(selector ? { labelSelector: parseLabelSelector(selector) } : {}),
        ...(limit ? { limit } : {}),
        ...(after ? { continueAfter: Buffer.from(after, 'base64url').toString() } : {}),
      })
      return {
        status: 200,
        body: {
          items: readsRedacted(request.principal) ? page.items.map(redactResource) : page.items,
          ...(page.continueAfter ? { continue: Buffer.from(page.continueAfter).toString('base64url') } : {}),
        },
      }
    })
    .add('GET', '/resources/:type/:name', async (request) => {
      const atRevision = positiveIntegerQuery(request, 'atRevision', Number.MAX_SAFE_INTEGER)
      const resource = await resources.get(...typeAndName(request), atRevision)
      return objectReply(200, resourceFor(request.principal, resource))
    })
    .add('PUT', '/resources/:type/:name', async (request) => {
      const [type, name] = typeAndName(request)
      const body = withPathDefaults(parseJson(request.body), { name, resource: type })
      const input = parseResource(body)
      beforeWrite()
      const updated = await conditionally(writeCondition(request, body), (revision) =>
        resources.update(type, name, input, revision),
      )
      return objectReply(200, updated)
    })
    .add('DELETE', '/resources/:type/:name', async (request) => {
      const [type, name] = typeAndName(request)
      const condition = writeCondition(request)
      beforeWrite()
      return objectReply(200, await conditionally(condition, (revision) => resources.delete(type, name, revision)))
    })
    .add('GET', '/resources/:type/:name/versions', async (request) => ({
      status: 200,
      body: { items: await resources.versions(...typeAndName(request)) },
    }))
    .add('GET', '/resources/:type/:name/:version', async (request) => {
      const [type, name] = typeAndName(request)
      const raw = request.params.version ?? ''
      const version = Number(raw)
      if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(version) || version < 1)
        throw invalid(`version must be a positive integer, got ${JSON.stringify(raw)}`, [
          { path: ':version', message: 'must be a positive integer' },
        ])
      return { status: 200, body: resourceFor(request.principal, await resources.getVersion(type, name, version)) }
    })
}
