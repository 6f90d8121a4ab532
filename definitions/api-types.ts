import Type, { type Static } from 'typebox'
import { NAME_MAX_LENGTH, NAME_PATTERN } from './names.ts'

/** TypeBox types of the API's request bodies: one source for validation, static types and OpenAPI. */

export const Name = Type.String({ pattern: NAME_PATTERN, maxLength: NAME_MAX_LENGTH, minLength: 1 })

const LABEL_KEY = '^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'
export const Labels = Type.Record(Type.String({ pattern: LABEL_KEY, maxLength: 253 }), Type.String({ maxLength: 63 }))

/** Server-owned metadata as GET returned it: ignored, except edited `labels`. */
const EditableMetadata = Type.Object({ labels: Type.Optional(Labels) })

export const DefinitionInput = Type.Object({
  name: Name,
  version: Type.Optional(Type.String({ maxLength: 64 })),
  description: Type.Optional(Type.String({ maxLength: 4096 })),
  schema: Type.Record(Type.String(), Type.Unknown()),
  lifecycle: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  labels: Type.Optional(Labels),
  metadata: Type.Optional(EditableMetadata),
})
export type DefinitionInput = Static<typeof DefinitionInput>

export const ResourceInput = Type.Object({
  name: Name,
  resource: Name,
  pipeline: Type.Optional(Name),
  labels: Type.Optional(Labels),
  spec: Type.Record(Type.String(), Type.Unknown()),
  metadata: Type.Optional(EditableMetadata),
  status: Type.Optional(Type.Unknown()),
  runid: Type.Optional(Type.Unknown()),
  version: Type.Optional(Type.Unknown()),
})
export type ResourceInput = Static<typeof ResourceInput>

export const LogInput = Type.Object({
  driver: Name,
  runid: Type.String({ pattern: '^[A-Za-z0-9_-]{1,128}$' }),
  pipeline: Type.Optional(Type.String({ maxLength: 128 })),
  message: Type.String({ maxLength: 65536 }),
  stream: Type.Optional(Type.String({ maxLength: 32 })),
  timestamp: Type.Optional(Type.String({ maxLength: 64 })),
})
export type LogInput = Static<typeof LogInput>
