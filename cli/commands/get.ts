import YAML from 'yaml'
import type { ConveyorClient } from '../../client/client.ts'
import type { Resource } from '../../definitions/objects.ts'
import type { TargetFlags } from '../contexts.ts'
import { age, duration, out, paint, printStructured, statusColour, table, type OutputFormat } from '../output.ts'
import { openSession } from '../session.ts'
import { describeEvent } from './history-lines.ts'

/** The collections `get` knows besides resource types, by every name they answer to. */
const COLLECTIONS: Readonly<Record<string, 'definitions' | 'pipelines' | 'drivers' | 'replays'>> = {
  definitions: 'definitions',
  definition: 'definitions',
  defs: 'definitions',
  def: 'definitions',
  resourcedefinitions: 'definitions',
  resourcedefinition: 'definitions',
  rd: 'definitions',
  pipelines: 'pipelines',
  pipeline: 'pipelines',
  pl: 'pipelines',
  drivers: 'drivers',
  driver: 'drivers',
  replays: 'replays',
  replay: 'replays',
}

/** How `get` shows one of the collections: what it reads, its columns, and an item's `-o name`. */
interface CollectionView<T> {
  all(client: ConveyorClient): Promise<T[]>
  one(client: ConveyorClient, name: string): Promise<T[]>
  readonly headers: readonly string[]
  row(item: T): string[]
  name(item: T): string
}

const view = <T>(v: CollectionView<T>): CollectionView<T> => v

const COLLECTION_VIEWS = {
  definitions: view({
    all: (client) => client.definitions.list(),
    one: async (client, name) => [await client.definitions.get(name)],
    headers: ['NAME', 'VERSION', 'LIFECYCLE', 'AGE'],
    row: (d) => [d.name, d.version ?? '', d.lifecycle ? 'custom' : 'default', age(d.metadata.createdAt)],
    name: (d) => `resourcedefinition/${d.name}`,
  }),
  pipelines: view({
    all: (client) => client.pipelines.list(),
    one: async (client, name) => [await client.pipelines.get(name)],
    headers: ['NAME', 'RESOURCE', 'STEPS', 'AGE'],
    row: (p) => [p.name, p.resource, p.steps.map((s) => s.id).join(','), age(p.metadata.createdAt)],
    name: (p) => `pipeline/${p.name}`,
  }),
  drivers: view({
    all: (client) => client.drivers.list(),
    one: async (client, name) => {
      const found = (await client.drivers.list()).filter((d) => d.name === name)
      if (found.length === 0) throw new TypeError(`driver ${name} has never been seen`)
      return found
    },
    headers: ['NAME', 'RESOURCES', 'INSTANCES', 'LAST SEEN'],
    row: (d) => [d.name, d.resources.join(','), String(d.instances.length), age(d.lastSeen)],
    name: (d) => `driver/${d.name}`,
  }),
  replays: view({
    all: (client) => client.replays.list(),
    one: async (client, id) => [await client.replays.get(id)],
    headers: ['ID', 'DRIVER', 'STATUS', 'DELIVERED', 'AGE'],
    row: (r) => [
      r.id,
      r.driver,
      paint(statusColour(r.status), r.status),
      `${r.delivered}/${r.total}`,
      age(r.createdAt),
    ],
    name: (r) => `replay/${r.id}`,
  }),
}

export interface GetFlags extends TargetFlags {
  readonly output: OutputFormat
  readonly selector?: string | undefined
  readonly watch?: boolean | undefined
}

/** `TYPE/NAME` or `TYPE NAME` or `TYPE`. */
export function splitTarget(first: string, second: string | undefined): [string, string | undefined] {
  const slash = first.indexOf('/')
  if (slash > 0) {
    if (second !== undefined) throw new TypeError(`give TYPE/NAME or TYPE NAME, not both (${first} ${second})`)
    return [first.slice(0, slash), first.slice(slash + 1)]
  }
  return [first, second]
}

function pipelineCell(resource: Resource): string {
  const run = resource.status?.pipeline
  if (!run) return '<none>'
  const steps = resource.status.steps ?? []
  const done = steps.filter((step) => step.status === 'succeeded').length
  return `${run.name} ${paint(statusColour(run.status), run.status)} ${done}/${steps.length}`
}

function resourceRow(resource: Resource, wide: boolean): string[] {
  const state = resource.status?.state ?? '<unknown>'
  const row = [
    resource.name,
    paint(statusColour(state), state),
    pipelineCell(resource),
    age(resource.metadata.createdAt),
  ]
  if (!wide) return row
  const labels = Object.entries(resource.metadata.labels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',')
  return [...row, labels || '<none>', resource.status?.runid ?? '', String(resource.metadata.revision)]
}

const RESOURCE_HEADERS = ['NAME', 'STATE', 'PIPELINE', 'AGE']
const WIDE_HEADERS = [...RESOURCE_HEADERS, 'LABELS', 'RUNID', 'REVISION']

function print(
  items: readonly unknown[],
  single: boolean,
  flags: GetFlags,
  rows: () => string[],
  nameOf: (item: never) => string,
): void {
  if (flags.output === 'json' || flags.output === 'yaml') printStructured(single ? items[0] : { items }, flags.output)
  else if (flags.output === 'name') for (const item of items) out(nameOf(item as never))
  else for (const line of rows()) out(line)
}

/** `conveyor get definitions|pipelines|drivers|replays|TYPE [NAME]`: a table, or `-o json|yaml|name|wide`; `-w` follows. */
export async function get(flags: GetFlags, first: string, second: string | undefined): Promise<number> {
  const [what, name] = splitTarget(first, second)
  const { client } = openSession(flags)
  const collection = COLLECTIONS[what.toLowerCase()]
  const wide = flags.output === 'wide'
  if (collection && (flags.watch || flags.selector))
    throw new TypeError(`-w and -l apply to resources only, not ${collection}`)
  if (collection) {
    const view = COLLECTION_VIEWS[collection] as CollectionView<unknown>
    const items = name ? await view.one(client, name) : await view.all(client)
    print(
      items,
      !!name,
      flags,
      () => table(view.headers, items.map(view.row)),
      (item: never) => view.name(item),
    )
    return 0
  }
  if (name) {
    if (flags.selector) throw new TypeError('-l selects among many: leave out NAME')
    const resource = await client.resources.get(what, name)
    print(
      [resource],
      true,
      flags,
      () => table(wide ? WIDE_HEADERS : RESOURCE_HEADERS, [resourceRow(resource, wide)]),
      () => `${what}/${name}`,
    )
    if (flags.watch) return await watchType(client, what, flags, name)
    return 0
  }
  if (flags.watch) return await watchType(client, what, flags)
  const items: Resource[] = []
  for await (const resource of client.resources.all(what, flags.selector ? { labelSelector: flags.selector } : {}))
    items.push(resource)
  if (items.length === 0 && (flags.output === 'table' || flags.output === 'wide')) {
    out(`No ${what} resources${flags.selector ? ` match ${flags.selector}` : ''}.`)
    return 0
  }
  print(
    items,
    false,
    flags,
    () =>
      table(
        wide ? WIDE_HEADERS : RESOURCE_HEADERS,
        items.map((r) => resourceRow(r, wide)),
      ),
    (r: Resource) => `${what}/${r.name}`,
  )
  return 0
}

/** Prints the list, then each change as it commits (with the resource's status at that moment), until Ctrl-C. */
async function watchType(client: ConveyorClient, type: string, flags: GetFlags, only?: string): Promise<number> {
  const controller = new AbortController()
  const stop = (): void => controller.abort()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  const wide = flags.output === 'wide'
  const structured = flags.output === 'json' || flags.output === 'yaml'
  let printedHeader = only !== undefined
  try {
    for await (const event of client.resources.watch(type, {
      signal: controller.signal,
      ...(flags.selector ? { labelSelector: flags.selector } : {}),
    })) {
      if (event.type === 'list') {
        if (only !== undefined) continue
        const rows = event.items
        if (structured) for (const item of rows) out(JSON.stringify({ type: 'listed', object: item }))
        else if (flags.output === 'name') for (const item of rows) out(`${type}/${item.name}`)
        else {
          const lines = table(
            wide ? WIDE_HEADERS : RESOURCE_HEADERS,
            rows.map((r) => resourceRow(r, wide)),
          )
          for (const line of printedHeader ? lines.slice(1) : lines) out(line)
          printedHeader = true
        }
        continue
      }
      if (only !== undefined && event.object.name !== only) continue
      const current =
        event.kind === 'deleted'
          ? undefined
          : await client.resources.get(type, event.object.name).catch(() => undefined)
      if (structured)
        out(JSON.stringify({ type: event.kind, revision: event.revision, object: current ?? event.object }))
      else if (flags.output === 'name') out(`${type}/${event.object.name} ${event.kind}`)
      else {
        const row = current ? resourceRow(current, wide) : [event.object.name, paint('gray', 'deleted'), '', '']
        const lines = table(wide ? WIDE_HEADERS : RESOURCE_HEADERS, [row])
        for (const line of printedHeader ? lines.slice(1) : lines) out(line)
        printedHeader = true
      }
    }
  } finally {
    process.removeListener('SIGINT', stop)
    process.removeListener('SIGTERM', stop)
  }
  return 0
}

const indent = (text: string, by = '  '): string =>
  text
    .trimEnd()
    .split('\n')
    .map((line) => by + line)
    .join('\n')

/** `conveyor describe TYPE/NAME`: spec, labels, state and accepted events, the run's steps, driver outcomes, recent history. */
export async function describe(flags: TargetFlags, first: string, second: string | undefined): Promise<number> {
  const [type, name] = splitTarget(first, second)
  const { client } = openSession(flags)
  const collection = COLLECTIONS[type.toLowerCase()]
  if (collection === 'definitions' || collection === 'pipelines') {
    if (!name) throw new TypeError(`describe ${type} needs a NAME`)
    const object = collection === 'definitions' ? await client.definitions.get(name) : await client.pipelines.get(name)
    process.stdout.write(YAML.stringify(object))
    return 0
  }
  if (!name) throw new TypeError('describe needs TYPE/NAME (or TYPE NAME)')
  const resource = await client.resources.get(type, name)
  const actor = await client.resources.actor(type, name).catch(() => undefined)
  const history = await client.resources.history(type, name, { limit: 1000 })
  const field = (label: string, value: string): boolean => out(`${(label + ':').padEnd(12)} ${value}`)
  field('Name', resource.name)
  field('Type', resource.resource)
  const labels = Object.entries(resource.metadata.labels ?? {}).map(([k, v]) => `${k}=${v}`)
  field('Labels', labels.join(', ') || '<none>')
  field('Created', `${resource.metadata.createdAt} (${age(resource.metadata.createdAt)} ago)`)
  field('Revision', `${resource.metadata.revision} (version ${resource.metadata.version})`)
  field('Run', resource.status.runid)
  const state = resource.status.state
  field('State', `${paint(statusColour(state), state)}${resource.status.done ? ' (final)' : ''}`)
  if (actor) {
    field('Accepts', actor.accepts.length > 0 ? actor.accepts.join(', ') : '<nothing: final or waiting>')
    for (const timer of actor.timers) field('Timer', `${timer.event} at ${timer.dueAt}`)
    if (actor.stuck) field('Stuck', `${actor.stuck.reason} since ${actor.stuck.since} (${actor.stuck.parked} parked)`)
  }
  const run = resource.status.pipeline
  if (run) {
    field(
      'Pipeline',
      `${run.name} ${paint(statusColour(run.status), run.status)}, started ${age(run.startedAt)} ago${run.message ? ` — ${run.message}` : ''}`,
    )
    const steps = (resource.status.steps ?? []) as unknown as {
      id: string
      driver: string
      status: string
      attempt: number
      startedAt?: string
      finishedAt?: string
      message?: string
    }[]
    out('Steps:')
    for (const line of table(
      ['ID', 'DRIVER', 'STATUS', 'ATTEMPT', 'DURATION', 'MESSAGE'],
      steps.map((step) => [
        step.id,
        step.driver,
        paint(statusColour(step.status), step.status),
        String(step.attempt),
        step.startedAt
          ? duration(Date.parse(step.finishedAt ?? new Date().toISOString()) - Date.parse(step.startedAt))
          : '',
        step.message ?? '',
      ]),
    ))
      out(`  ${line}`)
  }
  const outcomes = Object.entries(resource.status.drivers ?? {})
  if (outcomes.length > 0) {
    out('Drivers:')
    for (const [driver, outcome] of outcomes)
      out(
        `  ${driver}: ${paint(outcome.success ? 'green' : 'red', outcome.success ? 'succeeded' : 'failed')}${outcome.message ? ` — ${outcome.message}` : ''} (attempt ${outcome.attempt}, ${outcome.finishedAt})`,
      )
  }
  out('Spec:')
  out(indent(YAML.stringify(resource.spec)))
  const recent = history.items.slice(-10)
  out(`Events (last ${recent.length} of ${history.items.length}${history.next ? '+' : ''}):`)
  for (const line of table(
    ['SEQ', 'AGE', 'KIND', 'DETAIL'],
    recent.map((item) => [String(item.seq), age(item.time), item.kind, describeEvent(item.event)]),
  ))
    out(`  ${line}`)
  return 0
}
