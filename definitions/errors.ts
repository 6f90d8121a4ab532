/** One failing location of an invalid input, as in a problem+json `errors` entry. */
export interface FieldError {
  /** JSON pointer into the request body, e.g. `/spec/repository`. */
  readonly path: string
  readonly message: string
}

export const ErrorKind = {
  invalid: 400,
  unauthorized: 401,
  forbidden: 403,
  notFound: 404,
  conflict: 409,
  gone: 410,
  preconditionFailed: 412,
  tooLarge: 413,
  tooManyRequests: 429,
  unavailable: 503,
} as const
export type ErrorKind = keyof typeof ErrorKind

/**
 * An error with a stable `code` that tells callers (and the gateway) what went wrong.
 * `kind` decides the HTTP status; `errors` lists every failing field for invalid input.
 */
export class ConveyorError extends Error {
  readonly code: string
  readonly kind: ErrorKind | undefined
  readonly errors: readonly FieldError[] | undefined

  constructor(
    code: string,
    message: string,
    options: { kind?: ErrorKind; errors?: readonly FieldError[]; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'ConveyorError'
    this.code = code
    this.kind = options.kind
    this.errors = options.errors
  }

  get status(): number {
    return this.kind === undefined ? 500 : ErrorKind[this.kind]
  }
}

export const invalid = (message: string, errors?: readonly FieldError[]): ConveyorError =>
  new ConveyorError('invalid', message, { kind: 'invalid', ...(errors ? { errors } : {}) })

export const notFound = (message: string): ConveyorError =>
  new ConveyorError('not-found', message, { kind: 'notFound' })

export const conflict = (code: string, message: string): ConveyorError =>
  new ConveyorError(code, message, { kind: 'conflict' })

export const unavailable = (message: string, cause?: unknown): ConveyorError =>
  new ConveyorError('unavailable', message, { kind: 'unavailable', cause })

/** Normalises anything thrown into an `Error`. */
export function ensureError(value: unknown): Error {
  if (value instanceof Error) return value
  return new Error(typeof value === 'string' ? value : JSON.stringify(value))
}
