import Ajv2020Module from 'ajv/dist/2020.js'
import AjvDraft7Module from 'ajv'
import { Compile } from 'typebox/schema'
import { invalid, type FieldError } from './errors.ts'
import { toFieldErrors } from './validate.ts'

type AjvInstance = InstanceType<typeof Ajv2020Module.default>
const SAMPLES: unknown[] = [{}, [], null, 0, '', true]
const DRAFT_2020 = 'https://json-schema.org/draft/2020-12/schema'
const DRAFT_07 = new Set(['http://json-schema.org/draft-07/schema#', 'http://json-schema.org/draft-07/schema'])

let metaValidators: { draft2020: AjvInstance; draft7: AjvInstance } | undefined
const meta = (): { draft2020: AjvInstance; draft7: AjvInstance } =>
  (metaValidators ??= {
    draft2020: new Ajv2020Module.default({ strict: false, allErrors: true, validateFormats: false }),
    draft7: new AjvDraft7Module.default({
      strict: false,
      allErrors: true,
      validateFormats: false,
    }) as unknown as AjvInstance,
  })

/**
 * Checks a user's JSON Schema against its meta-schema (2020-12 unless `$schema` names draft-07)
 * and that it compiles. Throws a 400 whose errors point into the request body at `pathPrefix`.
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
  try {
    // A fresh instance each time: Ajv keeps compiled schemas by $id. This resolves every $ref.
    const compiler =
      ajv === meta().draft7
        ? new AjvDraft7Module.default({ strict: false, validateFormats: false })
        : new Ajv2020Module.default({ strict: false, validateFormats: false })
    compiler.compile(schema)
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    throw invalid(`schema does not compile: ${message}`, [{ path: pathPrefix, message }])
  }
  let validator: ReturnType<typeof Compile>
  try {
    validator = Compile(schema as never)
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    throw invalid(`schema does not compile: ${message}`, [{ path: pathPrefix, message }])
  }
  try {
    for (const sample of SAMPLES) validator.Check(sample)
  } catch {
    throw invalid('schema refers to itself without consuming input (a $ref cycle), so no value can be validated', [
      { path: pathPrefix, message: 'has a $ref cycle that consumes no input' },
    ])
  }
}

export type SpecValidator = (spec: unknown) => FieldError[]

/** Compiles a user schema (already checked) into a validator returning every failing path under `/spec`. */
export function compileSpecValidator(schema: object): SpecValidator {
  const validator = Compile(schema as never)
  return (spec) => {
    try {
      if (validator.Check(spec)) return []
    } catch (error) {
      if (error instanceof RangeError) return [{ path: '/spec', message: 'is nested too deeply for its schema' }]
      throw error
    }
    const [, errors] = validator.Errors(spec) as unknown as [boolean, never[]]
    const fieldErrors = toFieldErrors(errors, '/spec')
    return fieldErrors.length > 0 ? fieldErrors : [{ path: '/spec', message: 'does not match the definition schema' }]
  }
}
