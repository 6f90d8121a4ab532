import type { FieldError } from './errors.ts'
import { linearPatternProblem } from './linear-regexp.ts'

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)
const escape = (segment: string): string => segment.replace(/~/g, '~0').replace(/\//g, '~1')

/** Keywords whose value is one schema. */
const ONE = [
  'additionalProperties',
  'additionalItems',
  'unevaluatedProperties',
  'unevaluatedItems',
  'propertyNames',
  'contains',
  'not',
  'if',
  'then',
  'else',
  'items',
  'contentSchema',
]
/** Keywords whose value is a list of schemas. */
const LIST = ['allOf', 'anyOf', 'oneOf', 'prefixItems', 'items']
/** Keywords whose value maps names to schemas. */
const MAP = ['properties', '$defs', 'definitions', 'dependentSchemas', 'dependencies']

/**
 * Every regular expression of a JSON Schema (`pattern`, `patternProperties` keys, in any
 * subschema) that cannot run on the linear-time engine, each with its JSON pointer under
 * `pointer`. Only schema positions are visited: `const`, `enum`, `default` and `examples` are data.
 */
export function checkSchemaPatterns(schema: unknown, pointer: string): FieldError[] {
  const errors: FieldError[] = []
  const visit = (node: unknown, at: string, depth: number): void => {
    if (!isObject(node) || depth > 256) return
    if (typeof node.pattern === 'string') {
      const problem = linearPatternProblem(node.pattern)
      if (problem) errors.push({ path: `${at}/pattern`, message: problem })
    }
    if (isObject(node.patternProperties))
      for (const [pattern, sub] of Object.entries(node.patternProperties)) {
        const path = `${at}/patternProperties/${escape(pattern)}`
        const problem = linearPatternProblem(pattern)
        if (problem) errors.push({ path, message: problem })
        visit(sub, path, depth + 1)
      }
    for (const key of ONE) if (isObject(node[key])) visit(node[key], `${at}/${key}`, depth + 1)
    for (const key of LIST) {
      const list = node[key]
      if (Array.isArray(list)) list.forEach((sub, i) => visit(sub, `${at}/${key}/${i}`, depth + 1))
    }
    for (const key of MAP) {
      const map = node[key]
      if (isObject(map))
        for (const [name, sub] of Object.entries(map)) visit(sub, `${at}/${key}/${escape(name)}`, depth + 1)
    }
  }
  visit(schema, pointer, 0)
  return errors
}
