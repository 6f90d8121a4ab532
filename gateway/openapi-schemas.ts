import Type, { type TSchema } from 'typebox'
import { Labels, Name } from '../definitions/api-types.ts'
import { StepInput } from '../definitions/pipeline.ts'

/** TypeBox types of what the API answers, for the OpenAPI document (requests use definitions/). */

const Revision = Type.Integer({ minimum: 1, description: "etcd's mod revision: If-Match, time travel, watch resume" })

export const Problem = Type.Object(
  {
    type: Type.String({ description: 'urn:conveyor:problem:CODE' }),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    errors: Type.Optional(
      Type.Array(
        Type.Object({
          path: Type.String({ description: 'JSON pointer, :param, ?query or a header' }),
          message: Type.String(),
        }),
      ),
    ),
  },
  { description: 'application/problem+json (RFC 9457)' },
)

export const ObjectMetadata = Type.Object({
  uid: Type.String(),
  version: Type.Integer({ minimum: 1, description: "Conveyor's per-object counter" }),
  revision: Revision,
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  labels: Labels,
})

export const ResourceDefinition = Type.Object({
  name: Name,
  version: Type.String(),
  description: Type.Optional(Type.String()),
  schema: Type.Record(Type.String(), Type.Unknown(), { description: 'JSON Schema of spec' }),
  lifecycle: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'an XState machine config' })),
  metadata: ObjectMetadata,
})

export const Pipeline = Type.Object({
  name: Name,
  resource: Name,
  description: Type.Optional(Type.String()),
  steps: Type.Array(StepInput),
  metadata: ObjectMetadata,
  warnings: Type.Optional(Type.Array(Type.String())),
})

export const Resource = Type.Object({
  name: Name,
  resource: Name,
  pipeline: Type.Optional(Name),
  spec: Type.Record(Type.String(), Type.Unknown()),
  metadata: ObjectMetadata,
  runid: Type.String(),
  version: Type.Integer(),
  status: Type.Optional(
    Type.Object(
      {
        state: Type.String(),
        runid: Type.String(),
        context: Type.Record(Type.String(), Type.Unknown()),
        drivers: Type.Record(Type.String(), Type.Unknown()),
        done: Type.Optional(Type.Boolean()),
        pipeline: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
        steps: Type.Optional(Type.Array(Type.Record(Type.String(), Type.Unknown()))),
      },
      { description: "from the resource's actor" },
    ),
  ),
})

/** `{items, continue?}`. */
export const ListOf = (item: TSchema) =>
  Type.Object({ items: Type.Array(item), continue: Type.Optional(Type.String()) })

/** An answer whose shape is described in words (its fields are listed in the README). */
export const Described = (description: string) => Type.Record(Type.String(), Type.Unknown(), { description })
