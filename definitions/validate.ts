import { Compile } from 'typebox/compile'
import type { TSchema, Static } from 'typebox'
import { invalid, type FieldError } from './errors.ts'

interface RawError {
  readonly instancePath: string
  readonly keyword: string
  readonly message: string
  readonly params: Record<string, unknown>
}

/** Turns validator errors into one entry per failing path, with the path prefixed. */
export function toFieldErrors(errors: readonly RawError[], prefix = ''): FieldError[] {
  const byPath = new Map<string, string>()
  for (const error of errors) {
    if (error.keyword === 'boolean') continue
    let path = prefix + error.instancePath
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
    const errors = toFieldErrors([...validator.Errors(value)] as RawError[])
    throw invalid(`invalid ${what}: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`, errors)
  }
}
