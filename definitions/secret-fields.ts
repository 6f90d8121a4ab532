/**
 * Secret spec fields. A property of a definition's `schema` annotated `"writeOnly": true` (JSON
 * Schema's own "may be sent, never returned") is secret, at any depth of `spec` reached through
 * object `properties` and array `items`. A secret field is named by a JSON pointer into `spec`
 * (`/password`, `/db/key`), where `*` stands for every item of an array (`/keys/*`).
 *
 * Viewers read secret values as {@link REDACTED}; drivers mask them in their log lines. Nothing
 * else of a schema is followed (`$ref`, `allOf`, `anyOf`, `oneOf`, `additionalProperties`,
 * `patternProperties`, `prefixItems`): a field reached only through those is not secret.
 */

/** What a viewer reads in place of a secret value. */
export const REDACTED = '***redacted***'
/** What a log line shows in place of a secret value. */
export const MASKED = '***'
/** Shorter values are not masked in logs: they would mask ordinary text everywhere. */
export const MIN_MASKED_LENGTH = 4

/** Every item of an array, in a secret field's pointer. */
const EACH_ITEM = '*'

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

const escape = (segment: string): string => segment.replaceAll('~', '~0').replaceAll('/', '~1')
const unescape = (segment: string): string => segment.replaceAll('~1', '/').replaceAll('~0', '~')

/** Deeper than any sensible spec; also bounds a schema that nests without end. */
const MAX_DEPTH = 64

/** The JSON pointers (into `spec`) of a schema's secret fields, in schema order; empty when it has none. */
export function secretPointers(schema: unknown): string[] {
  const pointers: string[] = []
  const walk = (node: unknown, path: string, depth: number): void => {
    if (!isObject(node) || depth > MAX_DEPTH) return
    if (node.writeOnly === true && path !== '') {
      pointers.push(path)
      return
    }
    if (isObject(node.properties))
      for (const [name, child] of Object.entries(node.properties)) walk(child, `${path}/${escape(name)}`, depth + 1)
    if (isObject(node.items)) walk(node.items, `${path}/${EACH_ITEM}`, depth + 1)
  }
  walk(schema, '', 0)
  return pointers
}

const parsed = new Map<string, readonly string[]>()
const segmentsOf = (pointer: string): readonly string[] => {
  let segments = parsed.get(pointer)
  if (!segments) {
    segments = pointer.split('/').slice(1).map(unescape)
    if (parsed.size > 10_000) parsed.clear()
    parsed.set(pointer, segments)
  }
  return segments
}

/** Calls `found` with each value present at the pointer (several under `*`), and replaces it with what `found` returns. */
function rewrite(value: unknown, segments: readonly string[], at: number, found: (value: unknown) => unknown): unknown {
  if (at === segments.length) return found(value)
  const segment = segments[at]!
  if (Array.isArray(value) && segment === EACH_ITEM) {
    let copy: unknown[] | undefined
    for (const [index, item] of value.entries()) {
      const next = rewrite(item, segments, at + 1, found)
      if (next !== item) (copy ??= [...value])[index] = next
    }
    return copy ?? value
  }
  if (!isObject(value) || !Object.hasOwn(value, segment)) return value
  const child = value[segment]
  const next = rewrite(child, segments, at + 1, found)
  return next === child ? value : { ...value, [segment]: next }
}

/**
 * The spec with every secret value replaced by {@link REDACTED}; an absent field stays absent.
 * The spec itself is not changed (what changes is copied), and comes back as is without pointers.
 */
export function redactSpec<T extends Record<string, unknown>>(spec: T, pointers: readonly string[]): T {
  let result: unknown = spec
  for (const pointer of pointers) result = rewrite(result, segmentsOf(pointer), 0, () => REDACTED)
  return result as T
}

/** The texts a secret field's values show in logs: every string and number under the pointers. */
export function secretValues(spec: unknown, pointers: readonly string[]): string[] {
  const values = new Set<string>()
  const collect = (value: unknown, depth: number): void => {
    if (typeof value === 'string') values.add(value)
    else if (typeof value === 'number' || typeof value === 'bigint') values.add(String(value))
    else if (depth < MAX_DEPTH && typeof value === 'object' && value !== null)
      for (const item of Object.values(value)) collect(item, depth + 1)
  }
  for (const pointer of pointers)
    rewrite(spec, segmentsOf(pointer), 0, (value) => {
      collect(value, 0)
      return value
    })
  return [...values]
}

/**
 * Masks each secret value in a text with {@link MASKED}, as it is and as JSON escapes it; values
 * shorter than {@link MIN_MASKED_LENGTH} are left alone. Longer values go first, so one that contains another
 * is masked whole. Returns a function that is the identity when there is nothing to mask.
 */
export function masker(values: readonly string[]): (text: string) => string {
  // A value printed inside JSON or an inspected object shows escaped (quotes, backslashes, newlines).
  const forms = values.flatMap((v) => [v, JSON.stringify(v).slice(1, -1)])
  const masked = [...new Set(forms)].filter((v) => v.length >= MIN_MASKED_LENGTH).sort((a, b) => b.length - a.length)
  if (masked.length === 0) return (text) => text
  return (text) => {
    let out = text
    for (const value of masked) if (out.includes(value)) out = out.replaceAll(value, MASKED)
    return out
  }
}

/** A JSON value with `mask` applied to every string in it (the value itself when nothing changes). */
export function maskDeep<T>(value: T, mask: (text: string) => string, depth = 0): T {
  if (typeof value === 'string') return mask(value) as T
  if (typeof value !== 'object' || value === null || depth > MAX_DEPTH) return value
  let changed = false
  const entries = Object.entries(value).map(([key, item]) => {
    const next = maskDeep(item, mask, depth + 1)
    if (next !== item) changed = true
    return [key, next] as const
  })
  if (!changed) return value
  return (Array.isArray(value) ? entries.map(([, item]) => item) : Object.fromEntries(entries)) as T
}

/** The secret fields a resource carries in `metadata.secretFields` (stamped from its definition when it was written). */
export function secretFieldsOf(resource: unknown): readonly string[] {
  if (!isObject(resource) || !isObject(resource.metadata)) return []
  const fields = resource.metadata.secretFields
  return Array.isArray(fields) && fields.every((f) => typeof f === 'string') ? (fields as string[]) : []
}

/** A resource (the API's shape) with its secret values redacted; the same object when it has no secret fields. */
export function redactResource<T>(resource: T): T {
  const pointers = secretFieldsOf(resource)
  if (pointers.length === 0) return resource
  const object = resource as Record<string, unknown>
  if (!isObject(object.spec)) return resource
  return { ...object, spec: redactSpec(object.spec, pointers) } as T
}

/** The secret values of a resource, for masking (none when it has no secret fields). */
export function secretValuesOf(resource: unknown): string[] {
  const pointers = secretFieldsOf(resource)
  if (pointers.length === 0 || !isObject(resource)) return []
  return secretValues(resource.spec, pointers)
}
