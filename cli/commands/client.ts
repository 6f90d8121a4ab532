import { ConveyorError } from '../../runtime/errors.ts'
import { resolveConfig } from '../../runtime/config.ts'

/** Options of the client commands: where the gateway is, and what to print. */
export interface ClientFlags {
  readonly api?: string | undefined
  readonly json?: boolean | undefined
}

const out = (line: string): boolean => process.stdout.write(line + '\n')

function apiUrl(flags: ClientFlags): string {
  return (flags.api ?? resolveConfig().apiUrl).replace(/\/$/, '')
}

/** One request to the gateway; a problem+json answer becomes one clear error line. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the gateway's answers stay untyped until the typed client replaces this
export async function call(flags: ClientFlags, method: string, path: string, body?: unknown): Promise<any> {
  const url = apiUrl(flags) + path
  const token = resolveConfig().token
  let response: Response
  try {
    response = await fetch(url, {
      method,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
  } catch (error) {
    throw new ConveyorError(
      'unreachable',
      `cannot reach the Conveyor API at ${apiUrl(flags)} (set CONVEYOR_API_URL or --api): ${error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error)}`,
    )
  }
  const text = await response.text()
  const parsed = text ? JSON.parse(text) : undefined
  if (!response.ok) {
    const fields = Array.isArray(parsed?.errors)
      ? ` (${parsed.errors.map((e: { path: string; message: string }) => `${e.path} ${e.message}`).join('; ')})`
      : ''
    const fix =
      response.status === 401
        ? token
          ? ' (the token in CONVEYOR_TOKEN or .conveyor/admin.token is not valid here: make one with conveyor token create)'
          : ' (no token: set CONVEYOR_TOKEN, or run this where conveyor up keeps .conveyor/admin.token)'
        : ''
    throw new ConveyorError(
      'api',
      `${method} ${path}: ${response.status} ${parsed?.detail ?? parsed?.title ?? text}${fields}${fix}`,
    )
  }
  return parsed
}

function typeAndName(arg: string | undefined, usage: string): [string, string] {
  const match = /^([^/]+)\/([^/]+)$/.exec(arg ?? '')
  if (!match) throw new TypeError(`usage: ${usage}`)
  return [match[1]!, match[2]!]
}

/** `conveyor history TYPE/NAME [--kind k,…] [--after SEQ] [--limit N]`: the resource's events, oldest first. */
export async function history(
  flags: ClientFlags & { kind?: string | undefined; after?: string | undefined; limit?: string | undefined },
  target: string | undefined,
): Promise<number> {
  const [type, name] = typeAndName(
    target,
    'conveyor history TYPE/NAME [--kind created,transitioned] [--after SEQ] [--limit N]',
  )
  let after = Number(flags.after ?? 0)
  let remaining = flags.limit ? Number(flags.limit) : Number.POSITIVE_INFINITY
  while (remaining > 0) {
    const query = new URLSearchParams({
      limit: String(Math.min(1000, remaining)),
      ...(after ? { after: String(after) } : {}),
      ...(flags.kind ? { kind: flags.kind } : {}),
    })
    const page = await call(flags, 'GET', `/resources/${type}/${name}/history?${query}`)
    for (const item of page.items) {
      remaining--
      if (flags.json) out(JSON.stringify(item))
      else out(`${String(item.seq).padStart(8)}  ${item.time}  ${item.kind.padEnd(16)}  ${describe(item.event)}`)
    }
    if (page.next === undefined) break
    after = page.next
  }
  return 0
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an event of any kind, printed by its fields
function describe(event: any): string {
  switch (event.kind) {
    case 'transitioned':
      return `${event.from} → ${event.to} on ${event.event?.type} (seq ${event.seq})`
    case 'step.dispatched':
      return `step ${event.step.id} → ${event.step.driver} (attempt ${event.step.attempt})`
    case 'step.result':
      return `step ${event.step.id}: ${event.step.status}${event.step.message ? ` — ${event.step.message}` : ''}`
    case 'step.cancelled':
      return `step ${event.step.id} cancelled`
    case 'run.finished':
      return `run ${event.runid} ${event.status}`
    case 'driver.result':
      return `${event.driver}: ${event.outcome.success ? 'succeeded' : 'failed'}${event.outcome.message ? ` — ${event.outcome.message}` : ''}`
    default:
      return `revision ${event.revision}${event.version ? `, version ${event.version}` : ''}`
  }
}

/** `conveyor verify [TYPE/NAME]`: rebuild actors from their history and compare with etcd (every resource without an argument). */
export async function verify(flags: ClientFlags, target: string | undefined): Promise<number> {
  const targets: [string, string][] = []
  if (target) targets.push(typeAndName(target, 'conveyor verify [TYPE/NAME]'))
  else {
    for (const definition of (await call(flags, 'GET', '/resource-definitions')).items) {
      let next: string | undefined
      do {
        const page = await call(
          flags,
          'GET',
          `/resources/${definition.name}?limit=1000${next ? `&continue=${next}` : ''}`,
        )
        for (const item of page.items) targets.push([definition.name, item.name])
        next = page.continue
      } while (next)
    }
  }
  let failed = 0
  for (const [type, name] of targets) {
    const result = await call(flags, 'GET', `/resources/${type}/${name}/verify`)
    if (flags.json) out(JSON.stringify(result))
    else if (result.ok) out(`ok       ${type}/${name}: ${result.events} event(s) rebuild state ${result.rebuilt.state}`)
    else out(`MISMATCH ${type}/${name} at event ${result.divergence.seq}: ${result.divergence.reason}`)
    if (!result.ok) failed++
  }
  if (!flags.json) out(`${targets.length - failed} of ${targets.length} resource(s) match their history`)
  return failed === 0 ? 0 : 1
}

/** `conveyor replay --driver D [--type T] [--resource N] [--from-seq S | --since TIME] [--until SEQ|TIME] [--force]`. */
export async function replay(
  flags: ClientFlags & {
    driver?: string | undefined
    type?: string | undefined
    resource?: string | undefined
    fromSeq?: string | undefined
    since?: string | undefined
    until?: string | undefined
    force?: boolean | undefined
  },
): Promise<number> {
  if (!flags.driver)
    throw new TypeError(
      'usage: conveyor replay --driver NAME [--type T] [--resource N] [--from-seq S | --since TIME] [--until SEQ|TIME] [--force]',
    )
  const until = flags.until === undefined ? undefined : /^\d+$/.test(flags.until) ? Number(flags.until) : flags.until
  const started = await call(flags, 'POST', '/replay', {
    driver: flags.driver,
    ...(flags.type ? { type: flags.type } : {}),
    ...(flags.resource ? { resource: flags.resource } : {}),
    ...(flags.fromSeq ? { fromSequence: Number(flags.fromSeq) } : {}),
    ...(flags.since ? { since: flags.since } : {}),
    ...(until !== undefined ? { until } : {}),
    ...(flags.force ? { force: true } : {}),
  })
  out(
    `replay ${started.id}: ${started.total} event(s), sequences ${started.fromSequence}–${started.untilSequence}, to driver ${started.driver}${started.force ? ' (force)' : ''}`,
  )
  for (const warning of started.warnings ?? []) out(`warning: ${warning}`)
  // Ctrl-C (or SIGTERM) cancels the replay rather than leaving it running unwatched.
  let interrupted = false
  let wake: () => void = () => {}
  const stop = (): void => {
    interrupted = true
    wake()
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    let last = ''
    for (;;) {
      if (interrupted) {
        const cancelled = await call(flags, 'DELETE', `/replay/${started.id}`)
        out(`replay ${started.id}: ${cancelled.delivered}/${cancelled.total} delivered, ${cancelled.status}`)
        return 130
      }
      const progress = await call(flags, 'GET', `/replay/${started.id}`)
      const ended = progress.status !== 'running'
      const line = `replay ${started.id}: ${progress.delivered}/${progress.total} delivered${ended ? `, ${progress.status}` : ''}`
      if (line !== last) out(line)
      last = line
      if (ended) return progress.status === 'done' ? 0 : 1
      await new Promise<void>((resolve) => {
        wake = resolve
        setTimeout(resolve, 250)
      })
    }
  } finally {
    process.removeListener('SIGINT', stop)
    process.removeListener('SIGTERM', stop)
  }
}
