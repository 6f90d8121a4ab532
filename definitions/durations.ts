/** The one parser of durations and sizes, for the API (step `timeout`, `backoff`) and the environment. */

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const SIZES: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
}

/** The forms a duration may take, for schemas: `500ms`, `30s`, `5m`, `1h30m`, `7d`. */
export const DURATION_PATTERN = '^([0-9]+(ms|s|m|h|d))+$'

/** What a duration looks like, for error messages. */
export const DURATION_FORMS = 'a duration such as 30s, 5m, 1h30m or 500ms, or a positive number of milliseconds'

const PART = /(\d+)(ms|s|m|h|d)/g

/** `7d`, `1h30m`, `90m`, `30s`, `500ms` or plain milliseconds; `source` names the setting in the error. */
export function parseDuration(text: string | number, source: string): number {
  if (typeof text === 'number') {
    if (!Number.isInteger(text) || text <= 0) throw new TypeError(`${source} must be ${DURATION_FORMS}, got ${text}`)
    return text
  }
  const trimmed = text.trim()
  let total = 0
  if (/^\d+$/.test(trimmed)) total = Number(trimmed)
  else if (new RegExp(DURATION_PATTERN).test(trimmed))
    for (const [, amount, unit] of trimmed.matchAll(PART)) total += Number(amount) * UNITS[unit!]!
  if (!(total > 0) || !Number.isSafeInteger(total))
    throw new TypeError(`${source} must be ${DURATION_FORMS}, got ${JSON.stringify(text)}`)
  return total
}

/** `10GiB`, `500MB`, `1048576`. */
export function parseSize(text: string, source: string): number {
  const match = /^\s*(\d+)\s*([kmgt]i?b|b)?\s*$/i.exec(text)
  if (!match || Number(match[1]) <= 0)
    throw new TypeError(`${source} must be a size such as 10GiB or 500MB, got ${JSON.stringify(text)}`)
  return Number(match[1]) * SIZES[(match[2] ?? '').toLowerCase()]!
}
