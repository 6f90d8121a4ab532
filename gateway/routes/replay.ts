import Type from 'typebox'
import { Name } from '../../definitions/api-types.ts'
import { compileInput } from '../../definitions/validate.ts'
import { invalid } from '../../runtime/errors.ts'
import type { Connections } from '../../runtime/connections.ts'
import { listReplays, replayProgress, startReplay } from '../../runtime/replays.ts'
import { parseJson } from '../http.ts'
import type { Router } from '../router.ts'

const Time = Type.String({ minLength: 10, maxLength: 64 })
const ReplayInput = Type.Object(
  {
    driver: Name,
    type: Type.Optional(Name),
    resource: Type.Optional(Name),
    fromSequence: Type.Optional(Type.Integer({ minimum: 1 })),
    since: Type.Optional(Time),
    until: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Time])),
    force: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
)
const parseReplay = compileInput(ReplayInput, 'replay')
const ID = /^[a-f0-9]{12}$/

/** `POST /replay` re-delivers a range of history to a driver; `GET /replay/:id` tells how far it got. */
export function registerReplayRoutes(router: Router, connections: Connections, beforeWrite: () => void): void {
  router
    .add('POST', '/replay', async (request) => {
      const input = parseReplay(parseJson(request.body))
      for (const field of ['since', 'until'] as const) {
        const value = input[field]
        if (typeof value === 'string' && Number.isNaN(Date.parse(value)))
          throw invalid(`${field} must be an ISO date-time`, [
            { path: `/${field}`, message: 'must be an ISO date-time' },
          ])
      }
      beforeWrite()
      const replay = await startReplay(connections, input)
      return { status: 201, body: { ...replay, delivered: 0 } }
    })
    .add('GET', '/replay', async () => ({ status: 200, body: { items: await listReplays(connections) } }))
    .add('GET', '/replay/:id', async (request) => {
      const id = request.params.id ?? ''
      if (!ID.test(id))
        throw invalid('a replay id is 12 hex digits', [{ path: ':id', message: 'must be 12 hex digits' }])
      return { status: 200, body: await replayProgress(connections, id) }
    })
}
