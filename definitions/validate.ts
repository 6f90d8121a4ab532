import { Compile } from 'typebox/compile'
import type { TSchema, Static } from 'typebox'
import { invalid, type FieldError } from './errors.ts'

interface RawError {
  readonly instancePath: string
  readonly schemaPath?: string
  readonly keyword: string
  readonly message: string
  readonly params: Record<string, unknown>
}

/** The subschema a validator error's `schemaPath` (`#/properties/a/anyOf/0`) points at. */
function schemaAt(root: unknown, schemaPath: string | undefined): unknown {
  let node = root
  for (const part of (schemaPath ?? '#').split('/').slice(1)) {
    if (typeof node !== 'object' || node === null) return undefined
    node = (node as Record<string, unknown>)[part.replace(/~1/g, '/').replace(/~0/g, '~')]
  }
  return node
}

/** A schema's own `errorMessage` (as ajv-errors spells it): what to say instead of its members' failures. */
function errorMessageAt(root: unknown, schemaPath: string | undefined): string | undefined {
  const message = (schemaAt(root, schemaPath) as { errorMessage?: unknown } | undefined)?.errorMessage
  return typeof message === 'string' ? message : undefined
}

/**
 * Turns validator errors into one entry per failing path, with the path prefixed. With the
 * validated `schema`, a failing subschema that carries `errorMessage` (e.g. a union of a number
 * and a pattern) is described by it instead of by its members' failures.
 */
export function toFieldErrors(errors: readonly RawError[], prefix = '', schema?: unknown): FieldError[] {
  const byPath = new Map<string, string>()
  for (const error of errors) {
    if (error.keyword === 'boolean') continue
    let path = prefix + error.instancePath
    const custom = schema === undefined ? undefined : errorMessageAt(schema, error.schemaPath)
    if (custom !== undefined) {
      byPath.set(path === '' ? '/' : path, custom)
      continue
    }
    let message = error.message
    const missing = error.params.requiredProperties ?? error.params.missingProperty
    if (error.keyword === 'required' && missing !== undefined) {
      const names = Array.isArray(missing) ? missing : [missing]
      for (const name of names) byPath.set(`${path}/${String(name)}`, 'is required')
      continue
    }
    const extra = error.params.additionalProperties ?? error.params.additionalProperty
    if (error.keyword === 'additionalProperties' && extra !== undefined) {
      const names = Array.isArray(extra) ? extra : [extra]
      for (const name of names) byPath.set(`${path}/${String(name)}`, 'is not allowed')
      continue
    }
    if (error.keyword === 'enum' && Array.isArray(error.params.allowedValues))
      message = `must be one of ${error.params.allowedValues.join(', ')}`
    if (path === '') path = '/'
    if (!byPath.has(path)) byPath.set(path, message)
  }
  return [...byPath].map(([path, message]) => ({ path, message }))
}

/** Compiles a TypeBox type once and returns a parser that throws a 400 listing every failing path. */
export function compileInput<T extends TSchema>(type: T, what: string): (value: unknown) => Static<T> {
  const validator = Compile(type)
  return (value) => {
    if (validator.Check(value)) return value as Static<T>
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw invalid(`${what} must be a JSON object`, [{ path: '/', message: 'must be an object' }])
    const errors = toFieldErrors([...validator.Errors(value)] as RawError[], '', type)
    throw invalid(`invalid ${what}: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`, errors)
  }
}
