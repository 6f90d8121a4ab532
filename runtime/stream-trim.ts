/** What the trim plan needs of a durable consumer (JetStream's consumer info). */
export interface ConsumerProgress {
  readonly name?: string
  /** Its filter subject; undefined reads the whole stream. */
  readonly filter: string | undefined
  /** Highest stream sequence below which everything is acknowledged. */
  readonly ackFloor: number
  /** Stream sequence it has been delivered (and scanned) up to. */
  readonly delivered: number
  /** Messages matching its filter not delivered yet. */
  readonly pending: number
  /** Messages delivered and not acknowledged yet. */
  readonly ackPending: number
}

/** What the plan needs of the stream. */
export interface StreamFill {
  readonly firstSeq: number
  readonly lastSeq: number
  readonly bytes: number
  readonly maxBytes: number
}

/** One purge: messages matching `filter` with a sequence below `below`. */
export interface Purge {
  readonly filter: string
  readonly below: number
}

const tokens = (subject: string): string[] => subject.split('.')

/** True when some subject matches both filters. */
export function subjectsOverlap(a: string, b: string): boolean {
  const x = tokens(a)
  const y = tokens(b)
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if (x[i] === '>' || y[i] === '>') return true
    if (x[i] === undefined || y[i] === undefined) return false
    if (x[i] !== y[i] && x[i] !== '*' && y[i] !== '*') return false
  }
  return true
}

/** True when every subject `specific` matches, `general` matches too. */
export function subjectCovers(general: string, specific: string): boolean {
  const g = tokens(general)
  const s = tokens(specific)
  for (let i = 0; i < s.length; i++) {
    if (g[i] === '>') return true
    if (g[i] === undefined || s[i] === '>') return false
    if (g[i] !== '*' && (s[i] === '*' || g[i] !== s[i])) return false
  }
  return g.length === s.length
}

/** The first stream sequence the consumer still needs (Infinity when it needs nothing). */
export function firstOwed(consumer: ConsumerProgress): number {
  if (consumer.pending === 0 && consumer.ackPending === 0) return Number.POSITIVE_INFINITY
  if (consumer.ackPending === 0) return Math.max(consumer.ackFloor, consumer.delivered) + 1
  return consumer.ackFloor + 1
}

/**
 * Where to cut a stream so that about `keepShare` of its byte limit stays: messages below the
 * returned sequence are the oldest ones beyond that share (assuming messages of similar size).
 */
export function cutFor(stream: StreamFill, keepShare: number): number {
  const count = stream.lastSeq - stream.firstSeq + 1
  if (count <= 0 || stream.bytes <= 0) return stream.firstSeq
  const keep = Math.floor((count * keepShare * stream.maxBytes) / stream.bytes)
  return Math.max(stream.firstSeq, stream.lastSeq + 1 - keep)
}

/**
 * The purges that cut a stream at `cut` without removing anything a durable consumer has not
 * processed. A `shared` class is cut below the first message any consumer reading part of it
 * still needs; an `owned` class only inside the filters of its own consumers, each below what
 * the consumers reading that filter still need, so what no consumer took yet stays.
 */
export function planTrim(
  cut: number,
  consumers: readonly ConsumerProgress[],
  classes: { readonly shared: readonly string[]; readonly owned: readonly string[] },
): Purge[] {
  const owedWithin = (filter: string): number =>
    Math.min(
      ...consumers.filter((c) => c.filter === undefined || subjectsOverlap(c.filter, filter)).map(firstOwed),
      Number.POSITIVE_INFINITY,
    )
  const purges: Purge[] = []
  for (const filter of classes.shared) purges.push({ filter, below: Math.min(cut, owedWithin(filter)) })
  for (const owned of classes.owned) {
    const filters = new Set(
      consumers.flatMap((c) => (c.filter !== undefined && subjectCovers(owned, c.filter) ? [c.filter] : [])),
    )
    for (const filter of filters) purges.push({ filter, below: Math.min(cut, owedWithin(filter)) })
  }
  return purges.filter((purge) => purge.below > 1)
}
