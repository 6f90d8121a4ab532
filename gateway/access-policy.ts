import type { Access } from './auth.ts'
import type { ApiRequest } from './http.ts'

/**
 * Which resource type a call acts on, for tokens limited to some types: `shared` routes involve
 * no type (a limited token may use them), `all-types` routes span every type (it may not), and a
 * function names the type from the request (undefined: it cannot tell, so the route spans all).
 */
export type Scope = 'shared' | 'all-types' | ((request: ApiRequest) => string | undefined | Promise<string | undefined>)

/** What a route needs from its caller. */
export interface RoutePolicy {
  readonly access: Access
  readonly scope: Scope
}

/** The `name` or `resource` field of a JSON body, without failing on a body the handler will refuse. */
const bodyField =
  (field: string) =>
  (request: ApiRequest): string | undefined => {
    try {
      const value = (JSON.parse(request.body.toString('utf8')) as Record<string, unknown>)[field]
      return typeof value === 'string' ? value : undefined
    } catch {
      return undefined
    }
  }

const param =
  (name: string) =>
  (request: ApiRequest): string | undefined =>
    request.params[name]

const read = (scope: Scope): RoutePolicy => ({ access: 'read', scope })
const write = (scope: Scope): RoutePolicy => ({ access: 'write', scope })

/**
 * Every route's policy, in one table: what `docs/security.md` describes. A route missing here
 * needs an admin (a new route is closed until it is given a policy).
 */
export function routePolicies(runType: (runid: string) => Promise<string | undefined>): Record<string, RoutePolicy> {
  const runScope = async (request: ApiRequest): Promise<string | undefined> => {
    const runid = request.query.get('runid') ?? request.params.runid
    return runid ? await runType(runid) : undefined
  }
  return {
    'GET /health': { access: 'public', scope: 'shared' },
    'GET /ready': { access: 'public', scope: 'shared' },
    // The API reference page and its static assets hold no data; the document it shows needs a token.
    'GET /docs': { access: 'public', scope: 'shared' },
    'GET /docs/:asset': { access: 'public', scope: 'shared' },
    'GET /openapi.json': read('shared'),

    'POST /resource-definitions': write(bodyField('name')),
    'POST /resource-definitions/apply': write(bodyField('name')),
    'GET /resource-definitions': read('shared'),
    'GET /resource-definitions/:name': read(param('name')),
    'PUT /resource-definitions/:name': write(param('name')),
    'DELETE /resource-definitions/:name': write(param('name')),

    'POST /pipelines': write(bodyField('resource')),
    'GET /pipelines': read('shared'),
    'GET /pipelines/:name': read('shared'),
    'PUT /pipelines/:name': write(bodyField('resource')),
    'DELETE /pipelines/:name': write('all-types'),

    'POST /resources': write(bodyField('resource')),
    'GET /resources': read('shared'),
    'GET /resources/:type': read(param('type')),
    'GET /resources/:type/:name': read(param('type')),
    'PUT /resources/:type/:name': write(param('type')),
    'DELETE /resources/:type/:name': write(param('type')),
    'GET /resources/:type/:name/versions': read(param('type')),
    'GET /resources/:type/:name/:version': read(param('type')),
    'POST /resources/:type/:name/events': write(param('type')),
    'GET /resources/:type/:name/actor': read(param('type')),
    'GET /resources/:type/:name/actor/parked': read(param('type')),
    'POST /resources/:type/:name/actor/resume': write(param('type')),
    'GET /resources/:type/:name/verify': read(param('type')),
    'GET /resources/:type/:name/history': read(param('type')),

    'POST /logs': write(async (request) => {
      const runid = bodyField('runid')(request)
      return runid ? await runType(runid) : undefined
    }),
    'GET /logs': read(runScope),
    'GET /logs/streams/:driver/:runid': read(runScope),
    'GET /logs/pipeline/:runid': read(runScope),

    'GET /drivers': read('shared'),
    'POST /drivers/:name/identity': { access: 'driver', scope: 'shared' },

    'POST /replay': write('all-types'),
    'GET /replay': read('all-types'),
    'GET /replay/:id': read('all-types'),
    'DELETE /replay/:id': write('all-types'),

    'POST /tokens': { access: 'admin', scope: 'all-types' },
    'GET /tokens': { access: 'admin', scope: 'all-types' },
    'DELETE /tokens/:id': { access: 'admin', scope: 'all-types' },
  }
}

/** A route without an entry: admins only. */
export const CLOSED_ROUTE: RoutePolicy = { access: 'admin', scope: 'all-types' }
