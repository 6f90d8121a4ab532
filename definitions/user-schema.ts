import Ajv2020Module from 'ajv/dist/2020.js'
import AjvDraft7Module from 'ajv'
import { Format } from 'typebox/format'
import { invalid, type FieldError } from './errors.ts'
import { linearRegExpEngine } from './linear-regexp.ts'
import { checkSchemaPatterns } from './schema-patterns.ts'
import { toFieldErrors } from './validate.ts'

type AjvInstance = InstanceType<typeof Ajv2020Module.default>
const SAMPLES: unknown[] = [{}, [], null, 0, '', true]
const DRAFT_2020 = 'https://json-schema.org/draft/2020-12/schema'
const DRAFT_07 = new Set(['http://json-schema.org/draft-07/schema#', 'http://json-schema.org/draft-07/schema'])

// The meta-schemas' own patterns (`$anchor`…) run on user input too: on RE2 as well.
const META_OPTIONS = { strict: false, allErrors: true, validateFormats: false, code: { regExp: linearRegExpEngine } }
let metaValidators: { draft2020: AjvInstance; draft7: AjvInstance } | undefined
const meta = (): { draft2020: AjvInstance; draft7: AjvInstance } =>
  (metaValidators ??= {
    draft2020: new Ajv2020Module.default(META_OPTIONS),
    draft7: new AjvDraft7Module.default(META_OPTIONS) as unknown as AjvInstance,
  })

const isDraft7 = (schema: object): boolean => {
  const declared = (schema as { $schema?: unknown }).$schema
  return typeof declared === 'string' && DRAFT_07.has(declared)
}

/**
 * A fresh validator compiler for a user schema (Ajv keeps compiled schemas by `$id`). Every
 * `pattern` and `patternProperties` key runs on RE2 (linear time); formats are TypeBox's.
 */
function specCompiler(draft7: boolean): AjvInstance {
  const options = {
    strict: false,
    allErrors: true,
    validateSchema: false,
    logger: false as const,
    code: { regExp: linearRegExpEngine },
  }
  const ajv = draft7
    ? (new AjvDraft7Module.default(options) as unknown as AjvInstance)
    : new Ajv2020Module.default(options)
  for (const [name, check] of Format.Entries()) ajv.addFormat(name, check as (value: string) => boolean)
  return ajv
}

/**
 * Checks a user's JSON Schema against its meta-schema (2020-12 unless `$schema` names draft-07),
 * that each of its patterns runs on a linear-time engine, and that it compiles. Throws a 400
 * whose errors point into the request body at `pathPrefix`.
 */
export function checkUserSchema(schema: unknown, pathPrefix = '/schema'): void {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
    throw invalid('schema must be a JSON Schema object', [{ path: pathPrefix, message: 'must be an object' }])
  }
  const declared = (schema as { $schema?: unknown }).$schema
  let ajv: AjvInstance
  if (declared === undefined || declared === DRAFT_2020 || declared === `${DRAFT_2020}#`) ajv = meta().draft2020
  else if (typeof declared === 'string' && DRAFT_07.has(declared)) ajv = meta().draft7
  else
    throw invalid(`unsupported $schema ${JSON.stringify(declared)}: use draft 2020-12 or draft-07`, [
      { path: `${pathPrefix}/$schema`, message: 'must name JSON Schema draft 2020-12 or draft-07' },
    ])
  if (!ajv.validateSchema(schema)) {
    const errors = toFieldErrors((ajv.errors ?? []) as never, pathPrefix)
    throw invalid(`invalid schema: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`, errors)
  }
  const patterns = checkSchemaPatterns(schema, pathPrefix)
  if (patterns.length > 0)
    throw invalid(`invalid schema: ${patterns.map((e) => `${e.path} ${e.message}`).join('; ')}`, patterns)
  let validator: ReturnType<AjvInstance['compile']>
  try {
    // This resolves every $ref.
    validator = specCompiler(ajv === meta().draft7).compile(schema)
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    throw invalid(`schema does not compile: ${message}`, [{ path: pathPrefix, message }])
  }
  try {
    for (const sample of SAMPLES) validator(sample)
  } catch {
    throw invalid('schema refers to itself without consuming input (a $ref cycle), so no value can be validated', [
      { path: pathPrefix, message: 'has a $ref cycle that consumes no input' },
    ])
  }
}

export type SpecValidator = (spec: unknown) => FieldError[]

/** Compiles a user schema (already checked) into a validator returning every failing path under `/spec`. */
export function compileSpecValidator(schema: object): SpecValidator {
  let validator: ReturnType<AjvInstance['compile']>
  try {
    validator = specCompiler(isDraft7(schema)).compile(schema)
  } catch (error) {
    // Stored before its patterns were checked (one RE2 cannot run): nothing is let through.
    const message = `cannot be checked: the definition's schema does not compile (${error instanceof Error ? error.message : String(error)}); save the definition again`
    return () => [{ path: '/spec', message }]
  }
  return (spec) => {
    try {
      if (validator(spec)) return []
    } catch (error) {
      if (error instanceof RangeError) return [{ path: '/spec', message: 'is nested too deeply for its schema' }]
      throw error
    }
    const fieldErrors = toFieldErrors((validator.errors ?? []) as never, '/spec')
    return fieldErrors.length > 0 ? fieldErrors : [{ path: '/spec', message: 'does not match the definition schema' }]
  }
}
