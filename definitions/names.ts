/** The name rule of every Conveyor object (DNS label, as in Kubernetes). */
export const NAME_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
export const NAME_MAX_LENGTH = 63
const NAME_REGEX = new RegExp(NAME_PATTERN)

export function isValidName(value: unknown): value is string {
  return typeof value === 'string' && value.length <= NAME_MAX_LENGTH && NAME_REGEX.test(value)
}

export function nameProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return 'must be a string'
  if (value.length === 0) return 'must not be empty'
  if (value.length > NAME_MAX_LENGTH) return `must be at most ${NAME_MAX_LENGTH} characters`
  if (!NAME_REGEX.test(value)) return `must match ${NAME_PATTERN} (lower-case letters, digits and '-')`
  return undefined
}
