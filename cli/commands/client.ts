import { ConveyorError } from '../../runtime/errors.ts'
import { ApiError } from '../../client/errors.ts'
import type { TargetFlags } from '../contexts.ts'
import { isTerminal, out, paint, statusColour } from '../output.ts'
import { explain, openSession } from '../session.ts'
import { describeEvent } from './history-lines.ts'
import { splitTarget } from './get.ts'

/** Options of the client commands: where the gateway is, and what to print. */
export interface ClientFlags extends TargetFlags {
  readonly json?: boolean | undefined
}

/** One request to the gateway; a refusal becomes one clear error line. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- for commands that print what they get as it is
export async function call(flags: ClientFlags, method: string, path: string, body?: unknown): Promise<any> {
  const { transport, target } = openSession(flags)
  try {
    return (await transport.request(method, path, body === undefined ? {} : { body })).body
  } catch (error) {
    const reason = explain(error, target)
    throw reason === undefined ? error : new ConveyorError('api', reason)
  }
}

function typeAndName(arg: string | undefined, usage: string): [string, string] {
  const [type, name] = arg ? splitTarget(arg, undefined) : ['', undefined]
  if (!type || !name) throw new TypeError(`usage: ${usage}`)
  return [type, name]
}

/** `conveyor history TYPE/NAME [--kind k,…] [--after SEQ] [--limit N]`: the resource's events, oldest first. */
export async function history(
  flags: ClientFlags & { kind?: string | undefined; after?: number | undefined; limit?: number | undefined },
  target: string | undefined,
): Promise<number> {
  const [type, name] = typeAndName(
    target,
    'conveyor history TYPE/NAME [--kind created,transitioned] [--after SEQ] [--limit N]',
  )
  const { client } = openSession(flags)
  let after = flags.after ?? 0
  let remaining = flags.limit ?? Number.POSITIVE_INFINITY
  while (remaining > 0) {
    const page = await client.resources.history(type, name, {
      limit: Math.min(1000, remaining),
      ...(after > 0 ? { after } : {}),
      ...(flags.kind ? { kind: flags.kind.split(',') } : {}),
    })
    for (const item of page.items) {
      remaining--
      if (flags.json) out(JSON.stringify(item))
      else out(`${String(item.seq).padStart(8)}  ${item.time}  ${item.kind.padEnd(16)}  ${describeEvent(item.event)}`)
    }
    if (page.next === undefined) break
    after = page.next
  }
  return 0
}

/** `conveyor verify [TYPE/NAME]`: rebuild actors from their history and compare with etcd (every resource without an argument). */
export async function verify(flags: ClientFlags, target: string | undefined): Promise<number> {
  const { client } = openSession(flags)
  const targets: [string, string][] = []
  if (target) targets.push(typeAndName(target, 'conveyor verify [TYPE/NAME]'))
  else
    for (const definition of await client.definitions.list())
      for await (const item of client.resources.all(definition.name)) targets.push([definition.name, item.name])
  let failed = 0
  for (const [type, name] of targets) {
    const result = await client.resources.verify(type, name)
    const rebuilt = result.rebuilt as { state?: string } | undefined
    if (flags.json) out(JSON.stringify(result))
    else if (result.ok)
      out(`${paint('green', 'ok')}       ${type}/${name}: ${result.events} event(s) rebuild state ${rebuilt?.state}`)
    else
      out(
        `${paint('red', 'MISMATCH')} ${type}/${name} at event ${result.divergence?.seq}: ${result.divergence?.reason}`,
      )
    if (!result.ok) failed++
  }
  if (!flags.json) out(`${targets.length - failed} of ${targets.length} resource(s) match their history`)
  return failed === 0 ? 0 : 1
}

/** `--since`: an ISO time, or a duration ago (`90m`, `1h30m`, `2d`). */
export function sinceTime(text: string, now = Date.now()): string {
  const match = /^(\d+)(ms|s|m|h|d)((\d+)(ms|s|m|h|d))*$/.test(text)
  if (match) {
    const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
    let ms = 0
    for (const [, amount, unit] of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) ms += Number(amount) * units[unit!]!
    return new Date(now - ms).toISOString()
  }
  if (/^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text) && !Number.isNaN(Date.parse(text)))
    return new Date(text).toISOString()
  throw new TypeError(
    `--since must be an ISO time (2026-12-01T10:00:00Z) or a duration ago (30m, 1h30m, 2d), got ${JSON.stringify(text)}`,
  )
}

/** `conveyor replay --driver D [--type T] [--resource N] [--from-seq S | --since TIME] [--until SEQ|TIME] [--force]`. */
export async function replay(
  flags: ClientFlags & {
    driver: string
    type?: string | undefined
    resource?: string | undefined
    fromSeq?: number | undefined
    since?: string | undefined
    until?: string | undefined
    force?: boolean | undefined
  },
): Promise<number> {
  if (flags.fromSeq !== undefined && flags.since !== undefined)
    throw new TypeError('give --from-seq or --since, not both')
  const until =
    flags.until === undefined ? undefined : /^\d+$/.test(flags.until) ? Number(flags.until) : sinceTime(flags.until)
  const { client, target } = openSession(flags)
  const started = await client.replays
    .create({
      driver: flags.driver,
      ...(flags.type ? { type: flags.type } : {}),
      ...(flags.resource ? { resource: flags.resource } : {}),
      ...(flags.fromSeq ? { fromSequence: flags.fromSeq } : {}),
      ...(flags.since ? { since: sinceTime(flags.since) } : {}),
      ...(until !== undefined ? { until } : {}),
      ...(flags.force ? { force: true } : {}),
    })
    .catch((error: unknown) => {
      throw error instanceof ApiError ? new ConveyorError('api', explain(error, target)!) : error
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
  const bar = isTerminal()
  try {
    let last = ''
    for (;;) {
      if (interrupted) {
        const cancelled = await client.replays.cancel(started.id)
        if (bar) process.stdout.write('\n')
        out(`replay ${started.id}: ${cancelled.delivered}/${cancelled.total} delivered, ${cancelled.status}`)
        return 130
      }
      const progress = await client.replays.get(started.id)
      const ended = progress.status !== 'running'
      if (bar) {
        const width = 30
        const filled = progress.total === 0 ? width : Math.round((progress.delivered / progress.total) * width)
        process.stdout.write(
          `\r[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${progress.delivered}/${progress.total} ${paint(statusColour(progress.status), progress.status)}   `,
        )
        if (ended) process.stdout.write('\n')
      } else {
        const line = `replay ${started.id}: ${progress.delivered}/${progress.total} delivered${ended ? `, ${progress.status}` : ''}`
        if (line !== last) out(line)
        last = line
      }
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
