import Type from 'typebox'
import { Name } from '../../definitions/api-types.ts'
import { compileInput } from '../../definitions/validate.ts'
import { ConveyorError, invalid } from '../../runtime/errors.ts'
import type { Connections } from '../../runtime/connections.ts'
import { replayIdleTimeoutFromEnv } from '../../runtime/config.ts'
import { cancelReplay, listReplays, replayProgress, startReplay } from '../../runtime/replays.ts'
import { parseJson, type ApiRequest } from '../http.ts'
import type { Router } from '../router.ts'

const Time = Type.String({ minLength: 10, maxLength: 64 })
export const ReplayInput = Type.Object(
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

/** What the replay routes ask the driver registry. */
export interface ReplayDrivers {
  /** Seen at least once. */
  isKnown(driver: string): boolean
  /** Has a running instance now. */
  isLive(driver: string): boolean
}

function replayId(request: ApiRequest): string {
  const id = request.params.id ?? ''
  if (!ID.test(id)) throw invalid('a replay id is 12 hex digits', [{ path: ':id', message: 'must be 12 hex digits' }])
  return id
}

const minutes = (ms: number): string =>
  ms % 3_600_000 === 0 ? `${ms / 3_600_000} h` : ms % 60_000 === 0 ? `${ms / 60_000} min` : `${ms / 1000} s`

/**
 * `POST /replay` re-delivers a range of history to a driver the registry knows (404 otherwise);
 * `GET /replay/:id` tells how far it got; `DELETE /replay/:id` cancels it.
 */
export function registerReplayRoutes(
  router: Router,
  connections: Connections,
  beforeWrite: () => void,
  drivers: ReplayDrivers,
): void {
  const idleTimeoutMs = replayIdleTimeoutFromEnv()
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
      // Nothing would ever consume it: say so instead of waiting forever.
      if (!drivers.isKnown(input.driver))
        throw new ConveyorError(
          'driver-not-found',
          `driver "${input.driver}" has never been seen: run it once (conveyor driver …) before replaying to it`,
          { kind: 'notFound', errors: [{ path: '/driver', message: 'has never been seen by the driver registry' }] },
        )
      beforeWrite()
      const replay = await startReplay(connections, input, { idleTimeoutMs })
      if (drivers.isLive(input.driver)) return { status: 201, body: { ...replay, delivered: 0 } }
      const warning = `no running instance of driver "${input.driver}": the replay waits for one, and expires after ${minutes(idleTimeoutMs)} without one`
      return {
        status: 201,
        body: { ...replay, delivered: 0, warnings: [warning] },
        headers: { Warning: `299 conveyor ${JSON.stringify(warning)}` },
      }
    })
    .add('GET', '/replay', async () => ({ status: 200, body: { items: await listReplays(connections) } }))
    .add('GET', '/replay/:id', async (request) => ({
      status: 200,
      body: await replayProgress(connections, replayId(request)),
    }))
    .add('DELETE', '/replay/:id', async (request) => {
      const id = replayId(request)
      beforeWrite()
      await cancelReplay(connections, id)
      return { status: 200, body: await replayProgress(connections, id) }
    })
}
