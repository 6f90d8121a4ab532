import Type, { type Static } from 'typebox'
import { NAME_MAX_LENGTH, NAME_PATTERN } from './names.ts'

/** TypeBox types of the API's request bodies: one source for validation, static types and OpenAPI. */

export const Name = Type.String({ pattern: NAME_PATTERN, maxLength: NAME_MAX_LENGTH, minLength: 1 })

const LABEL_KEY = '^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'
export const Labels = Type.Record(Type.String({ pattern: LABEL_KEY, maxLength: 253 }), Type.String({ maxLength: 63 }))

/** A field the server owns: accepted as GET returned it (so an edited GET can be sent back), and ignored. */
const ServerOwned = Type.Optional(Type.Unknown())

/**
 * Metadata as GET returned it: `labels` is edited, `revision` is the revision a write expects,
 * the rest is the server's and ignored. Anything else (a typo) is refused.
 */
export const EditableMetadata = Type.Object(
  {
    labels: Type.Optional(Labels),
    revision: ServerOwned,
    uid: ServerOwned,
    version: ServerOwned,
    createdAt: ServerOwned,
    updatedAt: ServerOwned,
  },
  { additionalProperties: false },
)

/** Every request object is strict: an unknown field (`spce`, `lables`) is a 400 naming it. */
const STRICT = { additionalProperties: false } as const

export const DefinitionInput = Type.Object(
  {
    name: Name,
    version: Type.Optional(Type.String({ maxLength: 64 })),
    description: Type.Optional(Type.String({ maxLength: 4096 })),
    schema: Type.Record(Type.String(), Type.Unknown()),
    lifecycle: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    labels: Type.Optional(Labels),
    metadata: Type.Optional(EditableMetadata),
  },
  STRICT,
)
export type DefinitionInput = Static<typeof DefinitionInput>

export const ResourceInput = Type.Object(
  {
    name: Name,
    resource: Name,
    pipeline: Type.Optional(Name),
    labels: Type.Optional(Labels),
    spec: Type.Record(Type.String(), Type.Unknown()),
    metadata: Type.Optional(EditableMetadata),
    status: ServerOwned,
    runid: ServerOwned,
    version: ServerOwned,
  },
  STRICT,
)
export type ResourceInput = Static<typeof ResourceInput>

/**
 * A log line as Conveyor's drivers post it. The one lenient input: a driver written for Conveyor
 * may send fields of its own, and a line must not be lost for them (they are ignored, with a warning).
 */
export const LogInput = Type.Object({
  driver: Name,
  runid: Type.String({ pattern: '^[A-Za-z0-9_-]{1,128}$' }),
  pipeline: Type.Optional(Type.String({ maxLength: 128 })),
  message: Type.String({ maxLength: 65536 }),
  stream: Type.Optional(Type.String({ maxLength: 32 })),
  timestamp: Type.Optional(Type.String({ maxLength: 64 })),
})
export type LogInput = Static<typeof LogInput>
