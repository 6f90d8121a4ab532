import { LogInput } from '../../definitions/api-types.ts'
import { compileInput } from '../../definitions/validate.ts'
import { invalid } from '../../runtime/errors.ts'
import type { Connections } from '../../runtime/connections.ts'
import { subjects } from '../../runtime/keys.ts'
import type { LogStore } from '../log-store.ts'
import { parseJson } from '../http.ts'
import type { Router } from '../router.ts'
import { encodeLogLine } from '../../runtime/log-lines.ts'
import { nameParam, positiveIntegerQuery, withWarnings } from './common.ts'

const parseLog = compileInput(LogInput, 'log line')
const LOG_FIELDS = new Set(Object.keys(LogInput.properties))
const RUNID = /^[A-Za-z0-9_-]{1,128}$/
/** Bytes of stored lines one `GET /logs` answers with at most. */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024
/** Set when the size cut an answer short: pass it as `after` for the rest. */
const NEXT_AFTER_HEADER = 'Conveyor-Next-After'

export function runidParam(value: string | undefined | null, where: string): string {
  if (!value || !RUNID.test(value))
    throw invalid(`runid must be 1-128 letters, digits, '-' or '_'`, [
      { path: where, message: "must be 1-128 letters, digits, '-' or '_'" },
    ])
  return value
}

export function registerLogRoutes(
  router: Router,
  connections: Connections,
  logs: LogStore,
  beforeWrite: () => void,
): void {
  router
    .add('POST', '/logs', async (request) => {
      const line = parseLog(parseJson(request.body))
      beforeWrite()
      const ack = await connections.js.publish(subjects.log(line.driver, line.runid), encodeLogLine(line))
      await logs.waitFor(ack.seq)
      const ignored = Object.keys(line).filter((field) => !LOG_FIELDS.has(field))
      return withWarnings(
        { status: 201, body: { seq: ack.seq } },
        ignored.map((field) => `field ${JSON.stringify(field.slice(0, 64))} is not part of a log line: it was ignored`),
      )
    })
    .add('GET', '/logs', async (request) => {
      const runid = request.query.get('runid')
      const driver = request.query.get('driver')
      const pipeline = request.query.get('pipeline')
      if (!runid && !driver && !pipeline)
        throw invalid('GET /logs needs at least one of runid, driver or pipeline', [
          { path: '?runid', message: 'runid, driver or pipeline is required' },
        ])
      const after = positiveIntegerQuery(request, 'after', Number.MAX_SAFE_INTEGER)
      const limit = positiveIntegerQuery(request, 'limit', 100_000)
      const page = await logs.queryPage({
        ...(runid ? { runid: runidParam(runid, '?runid') } : {}),
        ...(driver ? { driver: nameParam({ ...request, params: { driver } }, 'driver') } : {}),
        ...(pipeline ? { pipeline } : {}),
        ...(after ? { after } : {}),
        ...(limit ? { limit } : {}),
        maxBytes: MAX_ANSWER_BYTES,
      })
      // Cut short by size: the next page starts after the last line of this one.
      const next = page.more ? { headers: { [NEXT_AFTER_HEADER]: String(page.lines.at(-1)!.seq) } } : {}
      return { status: 200, body: page.lines, ...next }
    })
}
