import type { LogEnd, LogLine } from '../definitions/objects.ts'
import { headers, parseLogSubject } from './keys.ts'

/** The longest line kept; longer ones are cut with a marker. */
export const MAX_LOG_LINE = 64 * 1024

/** What a log line carries on `conveyor.logs.{driver}.{runid}`. */
export interface LogLineBody {
  readonly message: string
  readonly stream?: string
  readonly timestamp?: string
  readonly pipeline?: string
  readonly step?: string
}

/** The one encoder of log lines: JSON `{message, stream, timestamp, pipeline?, step?}`. */
export function encodeLogLine(line: LogLineBody): string {
  const message =
    line.message.length > MAX_LOG_LINE ? line.message.slice(0, MAX_LOG_LINE) + ' …[truncated]' : line.message
  return JSON.stringify({
    message,
    stream: line.stream ?? 'log',
    timestamp: line.timestamp ?? new Date().toISOString(),
    ...(line.pipeline ? { pipeline: line.pipeline } : {}),
    ...(line.step ? { step: line.step } : {}),
  })
}

/** The end marker of a run's log: `{success, message, timestamp}` with the header `Conveyor-Log-End: 1`. */
export function encodeLogEnd(
  success: boolean,
  message: string,
): { body: string; headers: Readonly<Record<string, string>> } {
  return {
    body: JSON.stringify({ success, message, timestamp: new Date().toISOString() }),
    headers: { [headers.logEnd]: '1' },
  }
}

/** A stored log message back into a line or an end marker; undefined for anything else. */
export function decodeLogMessage(message: {
  subject: string
  seq: number
  headers?: { get(name: string): string } | undefined
  json<T>(): T
  info: { timestampNanos: number }
}): LogLine | LogEnd | undefined {
  const parsed = parseLogSubject(message.subject)
  if (!parsed) return undefined
  const { driver, runid } = parsed
  let body: Record<string, unknown>
  try {
    body = message.json<Record<string, unknown>>()
  } catch {
    return undefined
  }
  const timestamp =
    typeof body.timestamp === 'string' ? body.timestamp : new Date(message.info.timestampNanos / 1e6).toISOString()
  if (message.headers?.get(headers.logEnd))
    return {
      runid,
      driver,
      success: body.success === true,
      message: String(body.message ?? ''),
      timestamp,
      seq: message.seq,
    }
  return {
    runid,
    driver,
    ...(typeof body.pipeline === 'string' && body.pipeline ? { pipeline: body.pipeline } : {}),
    ...(typeof body.step === 'string' && body.step ? { step: body.step } : {}),
    message: String(body.message ?? ''),
    stream: typeof body.stream === 'string' ? body.stream : 'log',
    timestamp,
    seq: message.seq,
  }
}
