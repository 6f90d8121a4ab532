/** Exponential backoff with full jitter: attempt 1 waits up to `baseMs`, each further attempt up to twice as long, never more than `maxMs`. */
export function backoffMs(
  attempt: number,
  options: { readonly baseMs?: number; readonly maxMs?: number; readonly random?: () => number } = {},
): number {
  const base = options.baseMs ?? 200
  const max = options.maxMs ?? 30_000
  const ceiling = Math.min(max, base * 2 ** Math.max(0, attempt - 1))
  // Half fixed, half random: spreads retries without ever retrying at once.
  return Math.round(ceiling / 2 + (options.random ?? Math.random)() * (ceiling / 2))
}
