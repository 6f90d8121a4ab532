export {
  ConveyorError,
  ErrorKind,
  conflict,
  ensureError,
  invalid,
  notFound,
  unavailable,
} from '../definitions/errors.ts'
export type { FieldError } from '../definitions/errors.ts'

/** True when etcd refused a read or watch because the revision was compacted away. */
export const isCompactedError = (error: unknown): boolean =>
  error instanceof Error && /required revision has been compacted/.test(error.message)

/** True when etcd refused a read because the revision is ahead of the store. */
export const isFutureRevisionError = (error: unknown): boolean =>
  error instanceof Error && /required revision is a future revision/.test(error.message)
