import type { ActorRecord } from './actor-record.ts'
import { stepView } from '../definitions/pipeline.ts'
import type { DriverOutcome, ObjectMetadata, Resource, ResourceStatus } from '../definitions/objects.ts'
import { secretPointers } from '../definitions/secret-fields.ts'

export type StoredMetadata = Omit<ObjectMetadata, 'revision'> & {
  /**
   * JSON pointers into `spec` of the fields its definition's schema marks `writeOnly` (see
   * definitions/secret-fields.ts), as they were when the resource was written; absent when none.
   * Viewers read those values redacted, drivers mask them in their logs.
   */
  readonly secretFields?: readonly string[]
}

/** Secret pointers per schema object: the definition store keeps one schema object per definition revision. */
const pointersBySchema = new WeakMap<object, readonly string[]>()

/** The metadata to store with a resource validated against `schema`: it names the schema's secret fields (and only when there are some). */
export function withSecretFields(metadata: StoredMetadata, schema: unknown): StoredMetadata {
  let pointers: readonly string[] = []
  if (typeof schema === 'object' && schema !== null) {
    pointers = pointersBySchema.get(schema) ?? secretPointers(schema)
    pointersBySchema.set(schema, pointers)
  }
  const { secretFields: _before, ...rest } = metadata
  return pointers.length > 0 ? { ...rest, secretFields: pointers } : rest
}

/** What etcd holds at `/conveyor/resources/{type}/{name}`: the desired state and its run id. */
export interface StoredResource {
  readonly name: string
  readonly resource: string
  readonly pipeline?: string
  readonly spec: Record<string, unknown>
  readonly metadata: StoredMetadata
  readonly run: { readonly runid: string }
}

export interface PresentOptions {
  /** True when a driver has a live instance; a step waiting for one without says so in its message. */
  readonly driverIsLive?: (driver: string) => boolean
}

/** The resource's desired state as the API shows it, without its actor's status. */
export function presentDesired(stored: StoredResource, revision: number): Omit<Resource, 'status'> {
  return {
    name: stored.name,
    resource: stored.resource,
    ...(stored.pipeline !== undefined ? { pipeline: stored.pipeline } : {}),
    spec: stored.spec,
    metadata: { ...stored.metadata, revision },
    runid: stored.run.runid,
    version: stored.metadata.version,
  }
}

function driverOutcomes(actor: ActorRecord | undefined): Record<string, DriverOutcome> {
  const outcomes: Record<string, DriverOutcome> = {}
  for (const [driver, work] of Object.entries(actor?.drivers ?? {})) if (work.outcome) outcomes[driver] = work.outcome
  return outcomes
}

function stepsOf(actor: ActorRecord, options: PresentOptions): Record<string, unknown>[] {
  return actor.run!.steps.map((step) => {
    const view = stepView(step)
    const { claim, ...rest } = view as typeof view & { claim?: { holder: string; expiresAt: number } }
    const shown = claim ? { ...rest, instance: claim.holder } : rest
    if (step.status === 'running' && !claim && options.driverIsLive && !options.driverIsLive(step.driver)) {
      return { ...shown, message: `waiting: no instance of driver "${step.driver}" is running` }
    }
    return shown
  })
}

/** The one API projection of a resource: its desired state and, from its actor, the observed status. */
export function presentResource(
  stored: StoredResource,
  revision: number,
  actor: ActorRecord | undefined,
  options: PresentOptions = {},
): Resource {
  const current = actor?.uid === stored.metadata.uid && !actor.deletedAt ? actor : undefined
  const status: ResourceStatus = {
    state: current?.state ?? 'pending',
    runid: stored.run.runid,
    context: current?.snapshot.context ?? {},
    drivers: driverOutcomes(current),
    ...(current ? { done: current.snapshot.status !== 'active', seq: current.seq } : {}),
    ...(current?.stuck ? { stuck: current.stuck } : {}),
    ...(current?.run
      ? {
          pipeline: {
            name: current.run.pipeline,
            status: current.run.status,
            startedAt: current.run.startedAt,
            ...(current.run.finishedAt ? { finishedAt: current.run.finishedAt } : {}),
            ...(current.run.message ? { message: current.run.message } : {}),
          },
          steps: stepsOf(current, options),
        }
      : {}),
  }
  const desired = presentDesired(stored, revision)
  return { ...desired, status }
}
