import { invalid, notFound } from '../../runtime/errors.ts'
import { parseDuration } from '../../definitions/durations.ts'
import { nameProblem } from '../../definitions/names.ts'
import { parseRole, type TokenRequest, type TokenStore } from '../../runtime/token-store.ts'
import { parseJson, requestObject } from '../http.ts'
import type { Router } from '../router.ts'

const FIELDS = new Set(['role', 'types', 'driver', 'description', 'expiresIn'])
const MAX_TYPES = 100

/** `{role, types?, driver?, description?, expiresIn?}` (expiresIn: `30d`, `12h`, or milliseconds) into a token request. */
export function parseTokenRequest(value: unknown): TokenRequest {
  const body = requestObject(value, FIELDS, 'a token request', '{role, types?, driver?, description?, expiresIn?}')
  const role = parseRole(body.role, '/role')
  const types = body.types
  if (types !== undefined) {
    if (!Array.isArray(types) || types.length === 0 || types.length > MAX_TYPES)
      throw invalid(`types must be a list of 1 to ${MAX_TYPES} resource types`, [
        { path: '/types', message: `must be 1 to ${MAX_TYPES} names` },
      ])
    types.forEach((type, i) => {
      const problem = typeof type === 'string' ? nameProblem(type) : 'must be a string'
      if (problem) throw invalid(`types[${i}] ${problem}`, [{ path: `/types/${i}`, message: problem }])
    })
  }
  const driver = body.driver
  if (driver !== undefined) {
    const problem = typeof driver === 'string' ? nameProblem(driver) : 'must be a string'
    if (problem) throw invalid(`driver ${problem}`, [{ path: '/driver', message: problem }])
  }
  if (role === 'driver' && driver === undefined)
    throw invalid('a driver token names its driver', [{ path: '/driver', message: 'is required for the driver role' }])
  if (role !== 'driver' && driver !== undefined)
    throw invalid('only a driver token names a driver', [{ path: '/driver', message: 'is only for the driver role' }])
  const description = body.description
  if (description !== undefined && (typeof description !== 'string' || description.length > 200))
    throw invalid('description must be a string of at most 200 characters', [
      { path: '/description', message: 'must be a string of at most 200 characters' },
    ])
  let ttlMs: number | undefined
  if (body.expiresIn !== undefined) {
    try {
      ttlMs = parseDuration(body.expiresIn as string | number, 'expiresIn')
    } catch (error) {
      throw invalid(String((error as Error).message), [
        { path: '/expiresIn', message: 'must be a duration such as 30d, 12h or 15m' },
      ])
    }
  }
  return {
    role,
    ...(types ? { types: types as string[] } : {}),
    ...(driver ? { driver: driver as string } : {}),
    ...(description ? { description: description as string } : {}),
    ...(ttlMs !== undefined ? { ttlMs } : {}),
  }
}

/** `POST /tokens` (the secret is in this answer only), `GET /tokens`, `DELETE /tokens/:id`: admins only. */
export function registerTokenRoutes(router: Router, tokens: TokenStore): void {
  router
    .add(
      'POST',
      '/tokens',
      async (request) => {
        const created = await tokens.create(parseTokenRequest(parseJson(request.body)))
        return { status: 201, body: { ...created.info, token: created.token } }
      },
      { maxBodyBytes: 16 * 1024 },
    )
    .add('GET', '/tokens', async () => ({ status: 200, body: { items: await tokens.list() } }))
    .add('DELETE', '/tokens/:id', async (request) => {
      const id = request.params.id ?? ''
      if (!(await tokens.revoke(id))) throw notFound(`no token with id ${JSON.stringify(id)}`)
      return { status: 200, body: { id, revoked: true } }
    })
}
