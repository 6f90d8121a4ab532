import type { ConveyorClient } from '../../client/client.ts'
import type { LogLine } from '../../definitions/objects.ts'
import type { TargetFlags } from '../contexts.ts'
import { note, out, paint, printStructured, statusColour } from '../output.ts'
import { openSession } from '../session.ts'
import { splitTarget } from './get.ts'

export interface LogsFlags extends TargetFlags {
  readonly follow?: boolean | undefined
  readonly step?: string | undefined
  readonly run?: string | undefined
  readonly json?: boolean | undefined
}

/** What `logs -f` exits with: the run's result. */
export const RUN_EXIT = { succeeded: 0, failed: 1, cancelled: 2 } as const

const PREFIX_COLOURS = ['cyan', 'magenta', 'blue', 'yellow', 'green'] as const
const colourOf = (step: string): (typeof PREFIX_COLOURS)[number] => {
  let hash = 0
  for (const char of step) hash = (hash * 31 + char.charCodeAt(0)) >>> 0
  return PREFIX_COLOURS[hash % PREFIX_COLOURS.length]!
}

function printLine(line: LogLine, flags: LogsFlags): void {
  if (flags.step && line.step !== flags.step) return
  if (flags.json) return void out(JSON.stringify(line))
  const prefix = line.step ?? line.driver
  const text = line.stream === 'stderr' ? paint('red', line.message) : line.message
  out(`${paint(colourOf(prefix), `[${prefix}]`)} ${text}`)
}

/** Every stored line of a run, page by page. */
async function printStored(client: ConveyorClient, runid: string, flags: LogsFlags): Promise<void> {
  let after = 0
  for (;;) {
    const lines = await client.logs.query({ runid, limit: 10_000, ...(after > 0 ? { after } : {}) })
    for (const line of lines) printLine(line, flags)
    if (lines.length === 0) return
    after = lines.at(-1)!.seq
  }
}

/**
 * `conveyor logs TYPE/NAME [-f] [--step ID] [--run RUNID]`: the run's lines with their step as a
 * prefix. With `-f` it follows until the run ends and exits with its result: 0 succeeded,
 * 1 failed, 2 cancelled.
 */
export async function logs(flags: LogsFlags, first: string, second: string | undefined): Promise<number> {
  const [type, name] = splitTarget(first, second)
  if (!name) throw new TypeError('logs needs TYPE/NAME (or TYPE NAME)')
  const { client } = openSession(flags)
  const resource = await client.resources.get(type, name)
  const runid = flags.run ?? resource.status.runid
  if (flags.step && resource.status.steps && !resource.status.steps.some((s) => s.id === flags.step))
    throw new TypeError(
      `${type}/${name} has no step ${flags.step} (steps: ${resource.status.steps.map((s) => String(s.id)).join(', ')})`,
    )
  if (!flags.follow) {
    await printStored(client, runid, flags)
    return 0
  }
  const controller = new AbortController()
  const stop = (): void => controller.abort()
  process.once('SIGINT', stop)
  try {
    for await (const item of client.logs.follow({ runid }, { signal: controller.signal })) {
      if (item.type === 'line') printLine(item.line, flags)
    }
  } finally {
    process.removeListener('SIGINT', stop)
  }
  if (controller.signal.aborted) return 130
  const ended = await client.resources.get(type, name)
  const status = (ended.status.runid === runid ? ended.status.pipeline?.status : undefined) ?? 'succeeded'
  const exit = RUN_EXIT[status as keyof typeof RUN_EXIT] ?? 1
  note(`run ${runid} ${paint(statusColour(status), status)}`)
  return exit
}

export interface SendFlags extends TargetFlags {
  readonly data?: string | undefined
  readonly id?: string | undefined
  readonly json?: boolean | undefined
}

/** `conveyor send TYPE/NAME EVENT [--data JSON] [--id ID]`: an event to the resource's actor; 409 names what it accepts. */
export async function send(
  flags: SendFlags,
  first: string,
  second: string,
  third: string | undefined,
): Promise<number> {
  const [type, name, event] = first.includes('/') ? [...splitTarget(first, undefined), second] : [first, second, third]
  if (!name || !event) throw new TypeError('usage: conveyor send TYPE/NAME EVENT [--data JSON]')
  let data: Record<string, unknown> = {}
  if (flags.data !== undefined) {
    try {
      data = JSON.parse(flags.data) as Record<string, unknown>
    } catch (error) {
      throw new TypeError(`--data must be a JSON object: ${(error as Error).message}`)
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data))
      throw new TypeError('--data must be a JSON object')
  }
  const { client } = openSession(flags)
  const result = await client.resources.send(type, name, {
    ...data,
    type: event,
    ...(flags.id ? { id: flags.id } : {}),
  })
  if (flags.json) printStructured(result, 'json')
  else if (result.applied === false)
    out(`${type}/${name}: ${event} stored; no worker applied it yet (is a worker running?)`)
  else if (result.duplicate) out(`${type}/${name}: ${event} was sent before (id ${result.id}); state ${result.state}`)
  else out(`${type}/${name}: ${result.from} → ${paint(statusColour(result.state), String(result.state))} on ${event}`)
  return 0
}
