import fc from 'fast-check'
import { hostileKey, hostileString, hostileValue } from './hostile-values.ts'

/** What a body is turned into. */
export type BodyPlan =
  | { readonly kind: 'valid' }
  | { readonly kind: 'mutate'; readonly edits: readonly Edit[] }
  | { readonly kind: 'truncate'; readonly fraction: number }
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'deep'; readonly depth: number; readonly asObject: boolean }
  | { readonly kind: 'huge'; readonly bytes: number }
  | { readonly kind: 'empty' }
  | { readonly kind: 'encoding'; readonly encoding: 'utf16le' | 'bom' | 'latin1' | 'invalid-utf8' }
  | { readonly kind: 'none' }

interface Edit {
  readonly pick: number
  readonly op: 'replace' | 'delete' | 'add'
  readonly key: string
  readonly value: unknown
}

export const edit: fc.Arbitrary<Edit> = fc.record({
  pick: fc.nat(),
  op: fc.constantFrom('replace', 'replace', 'delete', 'add'),
  key: hostileKey,
  value: hostileValue,
})

export const bodyPlan = (hasBody: boolean): fc.Arbitrary<BodyPlan> =>
  hasBody
    ? fc.oneof(
        { weight: 12, arbitrary: fc.constant({ kind: 'valid' as const }) },
        {
          weight: 50,
          arbitrary: fc
            .array(edit, { minLength: 1, maxLength: 3 })
            .map((edits) => ({ kind: 'mutate' as const, edits })),
        },
        {
          weight: 8,
          arbitrary: fc
            .double({ min: 0, max: 1, noNaN: true })
            .map((f) => ({ kind: 'truncate' as const, fraction: f })),
        },
        {
          weight: 8,
          arbitrary: fc
            .oneof(
              hostileString,
              fc.jsonValue().map((v) => JSON.stringify(v)),
            )
            .map((text) => ({ kind: 'text' as const, text })),
        },
        {
          weight: 5,
          arbitrary: fc
            .tuple(fc.oneof(fc.integer({ min: 60, max: 70 }), fc.integer({ min: 71, max: 60_000 })), fc.boolean())
            .map(([depth, asObject]) => ({ kind: 'deep' as const, depth, asObject })),
        },
        {
          weight: 4,
          arbitrary: fc
            .constantFrom(60_000, 200_000, 262_000, 262_145, 300_000, 2_000_000)
            .map((bytes) => ({ kind: 'huge' as const, bytes })),
        },
        { weight: 4, arbitrary: fc.constant({ kind: 'empty' as const }) },
        {
          weight: 4,
          arbitrary: fc
            .constantFrom('utf16le' as const, 'bom' as const, 'latin1' as const, 'invalid-utf8' as const)
            .map((encoding) => ({ kind: 'encoding' as const, encoding })),
        },
      )
    : fc.oneof(
        { weight: 85, arbitrary: fc.constant({ kind: 'none' as const }) },
        { weight: 15, arbitrary: hostileString.map((text) => ({ kind: 'text' as const, text })) },
      )

/** Every node of a JSON value, as the list of keys that reach it (the root is `[]`). */
function nodePaths(value: unknown, prefix: readonly (string | number)[] = [], out: (string | number)[][] = []) {
  out.push([...prefix])
  if (Array.isArray(value)) value.forEach((item, i) => nodePaths(item, [...prefix, i], out))
  else if (typeof value === 'object' && value !== null)
    for (const [key, item] of Object.entries(value)) nodePaths(item, [...prefix, key], out)
  return out
}

export function applyEdits(template: unknown, edits: readonly Edit[]): unknown {
  let root = structuredClone(template)
  for (const { pick, op, key, value } of edits) {
    const paths = nodePaths(root)
    const path = paths[pick % paths.length]!
    if (path.length === 0) {
      if (op === 'replace') root = value
      else if (op === 'add' && typeof root === 'object' && root !== null)
        Object.defineProperty(root, key, { value, enumerable: true, writable: true, configurable: true })
      continue
    }
    const parent = path.slice(0, -1).reduce<any>((node, k) => node[k], root)
    const last = path.at(-1)!
    if (op === 'replace') parent[last] = value
    else if (op === 'delete') {
      if (Array.isArray(parent)) parent.splice(Number(last), 1)
      else delete parent[last]
    } else {
      const target = parent[last]
      if (Array.isArray(target)) target.push(value)
      else if (typeof target === 'object' && target !== null)
        Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
      else parent[last] = value
    }
  }
  return root
}

/** A body for a plan; `undefined` sends none. */
export function renderBody(plan: BodyPlan, template: unknown): Buffer | undefined {
  const valid = JSON.stringify(template ?? {})
  switch (plan.kind) {
    case 'none':
      return undefined
    case 'valid':
      return Buffer.from(valid)
    case 'mutate':
      return Buffer.from(JSON.stringify(applyEdits(template ?? {}, plan.edits)) ?? 'null')
    case 'truncate':
      return Buffer.from(valid.slice(0, Math.floor(valid.length * plan.fraction)))
    case 'text':
      return Buffer.from(plan.text)
    case 'deep':
      return Buffer.from(
        plan.asObject
          ? '{"a":'.repeat(plan.depth) + '1' + '}'.repeat(plan.depth)
          : '['.repeat(plan.depth) + ']'.repeat(plan.depth),
      )
    case 'huge': {
      const padding = 'x'.repeat(Math.max(0, plan.bytes - valid.length - 20))
      return Buffer.from(JSON.stringify({ ...(template as object), description: padding }))
    }
    case 'empty':
      return Buffer.alloc(0)
    case 'encoding':
      if (plan.encoding === 'utf16le') return Buffer.from(valid, 'utf16le')
      if (plan.encoding === 'bom') return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(valid)])
      if (plan.encoding === 'latin1') return Buffer.from(valid.replace(/"v/, '"\u00e9v'), 'latin1')
      return Buffer.concat([
        Buffer.from(valid.slice(0, -2)),
        Buffer.from([0xc3, 0x28, 0xed, 0xa0, 0x80]),
        Buffer.from('"}'),
      ])
  }
}
