import { randomUUID } from 'node:crypto'
import type { ICompare, IRequestOp } from 'etcd3'
import type { Connections } from './connections.ts'
import { compare, op, readKeys, readPrefix, type StoredValue } from './etcd-ops.ts'
import { ConveyorError, conflict, invalid, isCompactedError, isFutureRevisionError, notFound } from './errors.ts'
import { keys, streams, subjects } from './keys.ts'
import { maxVersionsFromEnv } from './config.ts'
import { retryOnConflict } from './retry.ts'
import type { Outbox, OutboxMessage } from './outbox.ts'
import type { TxnBatcher, TxnWrite } from './txn-batcher.ts'
import { isEtcdNoSpace } from './etcd-faults.ts'
import { staleRevision, type DefinitionStore } from './definition-store.ts'
import type { ActorInitializer, ActorRecord } from './actor-record.ts'
import type { ResourceInput } from '../definitions/api-types.ts'
import { planOf, type Pipeline } from '../definitions/pipeline.ts'
import type { ConveyorEvent, EventKind, Resource } from '../definitions/objects.ts'
import {
  presentResource,
  withSecretFields,
  type PresentOptions,
  type StoredMetadata,
  type StoredResource,
} from './resource-view.ts'

export interface ListOptions {
  readonly labelSelector?: LabelSelector
  readonly limit?: number
  readonly continueAfter?: string
  /** Bytes of stored values one page holds at most (at least one item): big resources come in several pages. @default 8 MiB */
  readonly maxBytes?: number
}

export interface ResourceStoreLimits {
  /** Versions of a resource kept, the current one included; older copies go in the write that replaces them. @default `maxVersionsFromEnv()` (10) */
  readonly maxVersions?: number
}

const LIST_PAGE_BYTES = 8 * 1024 * 1024

export type LabelSelector = (labels: Readonly<Record<string, string>>) => boolean

/** One create or replace of a resource, as `#commit` writes it. */
interface ResourceWrite {
  readonly stored: StoredResource
  readonly kind: 'created' | 'updated'
  readonly definition: {
    readonly definition: { readonly lifecycle?: Record<string, unknown>; readonly schema: Record<string, unknown> }
  }
  readonly pipeline: { readonly pipeline: Pipeline; readonly revision: number } | undefined
  /** What must still hold: the definition's, the key's (and the actor's) revisions. */
  readonly compares: readonly ICompare[]
  readonly extraOps?: readonly IRequestOp[]
  readonly extraMessages?: readonly OutboxMessage[]
  /** The actor being replaced: the new one keeps its inbox position and drivers' outcomes. */
  readonly previous?: ActorRecord
}

/** Labels edited in `metadata.labels` (as GET returned them) count when the top-level `labels` is absent. */
function labelsOf(metadata: Record<string, unknown> | undefined): Record<string, string> | undefined {
  const labels = metadata?.labels
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) return undefined
  return Object.fromEntries(Object.entries(labels).filter(([, v]) => typeof v === 'string')) as Record<string, string>
}

const parse = <T>(value: StoredValue | undefined): T | undefined => (value ? (JSON.parse(value.value) as T) : undefined)

/** Outcomes a new version keeps from the previous one's drivers (claims end with the version). */
function carriedDrivers(previous: ActorRecord | undefined): ActorRecord['drivers'] {
  if (!previous?.drivers) return undefined
  const drivers: Record<string, NonNullable<ActorRecord['drivers']>[string]> = {}
  for (const [driver, work] of Object.entries(previous.drivers))
    if (work.outcome)
      drivers[driver] = {
        work: '',
        executions: 0,
        outcome: work.outcome,
        ...(work.outcomeFor ? { outcomeFor: work.outcomeFor } : {}),
      }
  return drivers
}

const timerOps = (record: ActorRecord, make: (key: string) => IRequestOp): IRequestOp[] =>
  record.timers.map((t) => make(keys.timer(record.type, record.name, t.dueAt, t.id)))

/** Resources in etcd, every write one transaction with a revision compare and an outbox entry. */
export class ResourceStore {
  readonly #connections: Connections
  readonly #batcher: TxnBatcher
  readonly #outbox: Outbox
  readonly #definitions: DefinitionStore
  readonly #actors: ActorInitializer
  readonly #present: PresentOptions
  readonly #maxVersions: number

  constructor(
    connections: Connections,
    batcher: TxnBatcher,
    outbox: Outbox,
    definitions: DefinitionStore,
    actors: ActorInitializer,
    present: PresentOptions = {},
    limits: ResourceStoreLimits = {},
  ) {
    this.#connections = connections
    this.#batcher = batcher
    this.#outbox = outbox
    this.#definitions = definitions
    this.#actors = actors
    this.#present = present
    this.#maxVersions = limits.maxVersions ?? maxVersionsFromEnv()
  }

  async create(input: ResourceInput): Promise<Resource> {
    return await retryOnConflict(
      async (attempt) => {
        const definition = await this.#validated(input, attempt > 0)
        const now = new Date().toISOString()
        const stored = this.#build(input, {
          uid: randomUUID(),
          version: 1,
          createdAt: now,
          updatedAt: now,
          labels: input.labels ?? labelsOf(input.metadata) ?? {},
        })
        const pipeline = await this.#pipeline(input)
        const resource = await this.#commit({
          stored,
          kind: 'created',
          definition,
          pipeline,
          compares: [
            compare.modRevision(keys.definition(input.resource), definition.revision),
            compare.absent(keys.resource(input.resource, input.name)),
          ],
        })
        if (resource) return resource
        const { values } = await readKeys(this.#connections.etcd, [keys.resource(input.resource, input.name)])
        if (values[0]) throw conflict('already-exists', `resource ${input.resource}/${input.name} already exists`)
        return undefined
      },
      { exhausted: () => conflict('contention', `resource definition ${input.resource} kept changing; retry`) },
    )
  }

  /**
   * The resource now, or as it was at an etcd revision (spec, labels, and the actor's state then):
   * 410 once etcd compacted that revision away, 400 for a revision it has not reached.
   */
  async get(type: string, name: string, atRevision?: number): Promise<Resource> {
    const { values } = await readKeys(
      this.#connections.etcd,
      [keys.resource(type, name), keys.actor(type, name)],
      atRevision,
    ).catch((error: unknown) => {
      if (atRevision !== undefined && isCompactedError(error)) {
        throw new ConveyorError(
          'compacted',
          `revision ${atRevision} has been compacted: etcd no longer keeps it (see the retention settings); read the resource without atRevision or at a later revision`,
          { kind: 'gone' },
        )
      }
      if (atRevision !== undefined && isFutureRevisionError(error))
        throw invalid(`revision ${atRevision} is in the future`, [
          { path: '?atRevision', message: 'is ahead of the store' },
        ])
      throw error
    })
    const [resource, actor] = values
    if (!resource)
      throw notFound(
        atRevision === undefined
          ? `resource ${type}/${name} not found`
          : `resource ${type}/${name} did not exist at revision ${atRevision}`,
      )
    return presentResource(
      parse<StoredResource>(resource)!,
      resource.modRevision,
      parse<ActorRecord>(actor),
      this.#present,
    )
  }

  /** The actor record of a resource, with the revision it was last written at. */
  async actor(type: string, name: string): Promise<{ record: ActorRecord; revision: number }> {
    const { values } = await readKeys(this.#connections.etcd, [keys.actor(type, name), keys.resource(type, name)])
    const [actor, resource] = values
    if (!actor || !resource) throw notFound(`resource ${type}/${name} not found`)
    return { record: parse<ActorRecord>(actor)!, revision: actor.modRevision }
  }

  /** One version: a copy for earlier ones (made when they were replaced), the resource itself for the current one. */
  async getVersion(type: string, name: string, version: number): Promise<Resource> {
    const { values } = await readKeys(this.#connections.etcd, [
      keys.version(type, name, version),
      keys.resource(type, name),
    ])
    const [copy, current] = values
    if (copy) return presentResource(parse<StoredResource>(copy)!, copy.modRevision, undefined)
    const stored = parse<StoredResource>(current)
    if (!current || !stored) throw notFound(`resource ${type}/${name} not found`)
    if (version < stored.metadata.version)
      throw new ConveyorError(
        'version-gone',
        `version ${version} of ${type}/${name} is no longer kept: only the last ${this.#maxVersions} versions are (CONVEYOR_MAX_VERSIONS); GET ${type}/${name}/versions lists them`,
        { kind: 'gone' },
      )
    if (stored.metadata.version !== version) throw notFound(`resource ${type}/${name} has no version ${version}`)
    return presentResource(stored, current.modRevision, undefined)
  }

  /** Lists the version numbers of a resource, oldest first. */
  async versions(type: string, name: string): Promise<number[]> {
    const { values } = await readPrefix(this.#connections.etcd, keys.versions(type, name))
    const current = await this.get(type, name)
    return [...values.map((v) => parse<StoredResource>(v)!.metadata.version), current.version]
  }

  async list(type: string, options: ListOptions = {}): Promise<{ items: Resource[]; continueAfter?: string }> {
    // Pages are read at one revision; if etcd compacted it meanwhile (space ran short), read again.
    return await this.#listOnce(type, options).catch((error: unknown) => {
      if (!isCompactedError(error)) throw error
      return this.#listOnce(type, options)
    })
  }

  async #listOnce(type: string, options: ListOptions): Promise<{ items: Resource[]; continueAfter?: string }> {
    const limit = options.limit ?? 500
    const maxBytes = options.maxBytes ?? LIST_PAGE_BYTES
    let bytes = 0
    const items: Resource[] = []
    let startAfter = options.continueAfter ? keys.resource(type, options.continueAfter) : undefined
    let revision: number | undefined
    for (;;) {
      const page = await readPrefix(this.#connections.etcd, keys.resources(type), {
        limit: Math.min(500, limit + 1),
        ...(startAfter ? { startAfter } : {}),
        ...(revision ? { revision } : {}),
      })
      revision ??= page.revision
      const selected = page.values
        .map((v) => ({ value: v, stored: parse<StoredResource>(v)! }))
        .filter((v) => !options.labelSelector || options.labelSelector(v.stored.metadata.labels))
      const actors = await readKeys(
        this.#connections.etcd,
        selected.map((v) => keys.actor(type, v.stored.name)),
        revision,
      )
      for (const [i, { value, stored }] of selected.entries()) {
        if (items.length === limit || (items.length > 0 && bytes >= maxBytes))
          return { items, continueAfter: items.at(-1)!.name }
        const actor = actors.values[i]
        bytes += value.value.length + (actor?.value.length ?? 0)
        items.push(presentResource(stored, value.modRevision, parse<ActorRecord>(actor), this.#present))
      }
      if (!page.more || page.values.length === 0) return { items }
      startAfter = page.values.at(-1)!.key
    }
  }

  /**
   * Replaces spec, labels and pipeline of a resource, starting a new run (the actor starts over).
   * Server-owned fields of the input are ignored. With `expectedRevision` a concurrent change answers 409.
   */
  async update(type: string, name: string, input: ResourceInput, expectedRevision?: number): Promise<Resource> {
    if (input.name !== name)
      throw invalid(`name ${input.name} does not match the URL (${name})`, [
        { path: '/name', message: `must be ${name}` },
      ])
    if (input.resource !== type)
      throw invalid(`resource ${input.resource} does not match the URL (${type})`, [
        { path: '/resource', message: `must be ${type}` },
      ])
    return await retryOnConflict(
      async (attempt) => {
        const { values } = await readKeys(this.#connections.etcd, [keys.resource(type, name), keys.actor(type, name)])
        const [current, actor] = values
        if (!current) throw notFound(`resource ${type}/${name} not found`)
        if (expectedRevision !== undefined && expectedRevision !== current.modRevision)
          throw staleRevision('resource', `${type}/${name}`, expectedRevision, current.modRevision)
        const definition = await this.#validated(input, attempt > 0)
        const previous = parse<StoredResource>(current)!
        const stored = this.#build(input, {
          ...previous.metadata,
          version: previous.metadata.version + 1,
          updatedAt: new Date().toISOString(),
          labels: input.labels ?? labelsOf(input.metadata) ?? previous.metadata.labels,
        })
        const oldActor = parse<ActorRecord>(actor)
        const pipeline = await this.#pipeline(input)
        return await this.#commit({
          stored,
          kind: 'updated',
          definition,
          pipeline,
          compares: [
            compare.modRevision(keys.definition(type), definition.revision),
            compare.modRevision(keys.resource(type, name), current.modRevision),
            compare.modRevision(keys.actor(type, name), actor?.modRevision ?? 0),
          ],
          // The replaced version is copied aside now, so a create writes no copy at all; copies
          // beyond the versions kept go in the same transaction.
          extraOps: [
            ...this.#versionOps(type, name, previous.metadata.version, current.value),
            op.delete(keys.run(previous.run.runid)),
            ...(oldActor ? timerOps(oldActor, op.delete) : []),
          ],
          extraMessages: oldActor
            ? this.#actors.retire(
                oldActor,
                `resource ${type}/${name} was replaced by version ${stored.metadata.version}`,
                Date.now(),
              )
            : [],
          ...(oldActor ? { previous: oldActor } : {}),
        })
      },
      { exhausted: () => conflict('contention', `resource ${type}/${name} kept changing; retry`) },
    )
  }

  async delete(type: string, name: string, expectedRevision?: number): Promise<Resource> {
    return await retryOnConflict(
      async () => {
        const { values } = await readKeys(this.#connections.etcd, [keys.resource(type, name), keys.actor(type, name)])
        const [current, actor] = values
        if (!current) throw notFound(`resource ${type}/${name} not found`)
        if (expectedRevision !== undefined && expectedRevision !== current.modRevision)
          throw staleRevision('resource', `${type}/${name}`, expectedRevision, current.modRevision)
        const stored = parse<StoredResource>(current)!
        const record = parse<ActorRecord>(actor)
        const last = presentResource(stored, current.modRevision, record, this.#present)
        // The actor stays as a tombstone, so each driver handles the deletion once.
        const tombstone = record ? this.#actors.tombstone(record, Date.now()) : undefined
        const retired = record ? this.#actors.retire(record, `resource ${type}/${name} was deleted`, Date.now()) : []
        // Refused before anything is written: the deletion's events would not fit in the stream.
        this.#connections.streamSpace.assertRoom(streams.events)
        const { entry, op: outboxOp } = this.#outbox.entryOf([
          { subject: subjects.resource(type, name, 'deleted'), event: this.#event('deleted', stored, last) },
          ...retired,
        ])
        const outcome = await this.#commitWrite(entry.key, keys.resource(type, name), (v) => v === undefined, {
          compares: [
            compare.modRevision(keys.resource(type, name), current.modRevision),
            compare.modRevision(keys.actor(type, name), actor?.modRevision ?? 0),
          ],
          ops: [
            op.delete(keys.resource(type, name)),
            op.delete(keys.run(stored.run.runid)),
            ...(record ? timerOps(record, op.delete) : []),
            ...(tombstone
              ? [
                  op.put(keys.actor(type, name), JSON.stringify(tombstone)),
                  ...timerOps(tombstone, (key) => op.put(key, '')),
                ]
              : [op.delete(keys.actor(type, name))]),
            op.deletePrefix(keys.versions(type, name)),
            outboxOp,
          ],
        })
        if (!outcome.succeeded) return undefined
        if (!outcome.published) this.#outbox.publishInBackground([entry], outcome.revision)
        return last
      },
      { exhausted: () => conflict('contention', `resource ${type}/${name} kept changing; retry`) },
    )
  }

  /** Copies the replaced version aside and deletes the copies that fall out of the versions kept. */
  #versionOps(type: string, name: string, replaced: number, value: string): IRequestOp[] {
    const oldestKept = replaced + 2 - this.#maxVersions
    return [
      ...(oldestKept <= replaced ? [op.put(keys.version(type, name, replaced), value)] : []),
      ...(oldestKept > 1
        ? [op.deleteRange(keys.versions(type, name), keys.version(type, name, Math.min(oldestKept, replaced + 1)))]
        : []),
    ]
  }

  /** Fetches the definition (fresh after a failed compare) and validates the spec. */
  async #validated(input: ResourceInput, fresh: boolean) {
    const compiled = await this.#definitions.compiled(input.resource, { fresh })
    if (!compiled) throw notFound(`resource definition ${input.resource} not found`)
    const errors = compiled.validate(input.spec)
    if (errors.length > 0)
      throw invalid(
        `spec does not match resource definition ${input.resource}: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`,
        errors,
      )
    return compiled
  }

  #build(input: ResourceInput, metadata: StoredMetadata): StoredResource {
    return {
      name: input.name,
      resource: input.resource,
      ...(input.pipeline !== undefined ? { pipeline: input.pipeline } : {}),
      spec: input.spec,
      metadata,
      run: { runid: randomUUID() },
    }
  }

  #event(kind: EventKind, stored: StoredResource, object: Resource): ConveyorEvent {
    return {
      kind,
      uid: stored.metadata.uid,
      revision: 0,
      time: stored.metadata.updatedAt,
      type: stored.resource,
      name: stored.name,
      runid: stored.run.runid,
      version: stored.metadata.version,
      object,
    }
  }

  /** The pipeline a resource names, checked against its type; its revision joins the write's compares. */
  async #pipeline(input: ResourceInput): Promise<{ pipeline: Pipeline; revision: number } | undefined> {
    if (input.pipeline === undefined) return undefined
    const { values } = await readKeys(this.#connections.etcd, [keys.pipeline(input.pipeline)])
    const value = values[0]
    if (!value)
      throw invalid(`pipeline ${input.pipeline} does not exist`, [
        { path: '/pipeline', message: `pipeline ${input.pipeline} not found` },
      ])
    const pipeline = JSON.parse(value.value) as Pipeline
    if (pipeline.resource !== input.resource)
      throw invalid(`pipeline ${input.pipeline} runs ${pipeline.resource} resources, not ${input.resource}`, [
        { path: '/pipeline', message: `runs resources of type ${pipeline.resource}` },
      ])
    return { pipeline, revision: value.modRevision }
  }

  /** Writes the resource, a fresh actor (and its timers, and its run) and the outbox entry in one transaction; undefined when a compare failed. */
  async #commit(write: ResourceWrite): Promise<Resource | undefined> {
    const { kind, definition, pipeline, compares, extraOps = [], extraMessages = [], previous } = write
    // Stored with the secret fields of the schema it was validated against (viewers read them redacted, logs mask them).
    const stored = { ...write.stored, metadata: withSecretFields(write.stored.metadata, definition.definition.schema) }
    const type = stored.resource
    const initial = this.#actors.initial({
      uid: stored.metadata.uid,
      type,
      name: stored.name,
      runid: stored.run.runid,
      lifecycle: definition.definition.lifecycle,
      ...(pipeline ? { pipeline: { name: pipeline.pipeline.name, plan: planOf(pipeline.pipeline.steps) } } : {}),
      now: Date.now(),
    })
    const { messages } = initial
    // The new run keeps what the actor already consumed of its inbox, so a redelivery of an event
    // the old run applied (its owner died before acking) is not applied to the new one.
    const drivers = carriedDrivers(previous)
    const record: ActorRecord = previous
      ? {
          ...initial.record,
          inboxSeq: previous.inboxSeq,
          recentIds: previous.recentIds,
          ...(drivers ? { drivers } : {}),
        }
      : initial.record
    const resource = presentResource(stored, 0, record, this.#present)
    const { entry, op: outboxOp } = this.#outbox.entryOf([
      ...extraMessages,
      { subject: subjects.resource(type, stored.name, kind), event: this.#event(kind, stored, resource) },
      ...messages,
    ])
    // Refused before anything is written: the change's events would not fit in the stream.
    this.#connections.streamSpace.assertRoom(streams.events)
    const value = JSON.stringify(stored)
    const actorValue = JSON.stringify(record)
    const newTimers = new Set(record.timers.map((t) => keys.timer(type, stored.name, t.dueAt, t.id)))
    const mine = (v: StoredValue | undefined) => parse<StoredResource>(v)?.run.runid === stored.run.runid
    const outcome = await this.#commitWrite(entry.key, keys.resource(type, stored.name), mine, {
      compares: [
        ...compares,
        ...(pipeline ? [compare.modRevision(keys.pipeline(pipeline.pipeline.name), pipeline.revision)] : []),
      ],
      ops: [
        ...extraOps.filter((o) => !newTimers.has(o.request_delete_range?.key?.toString() ?? '')),
        op.put(keys.resource(type, stored.name), value),
        op.put(keys.run(stored.run.runid), JSON.stringify({ type, name: stored.name })),
        op.put(keys.actor(type, stored.name), actorValue),
        ...timerOps(record, (key) => op.put(key, '')),
        outboxOp,
      ],
    })
    if (!outcome.succeeded) return undefined
    // Best effort, before the events go out: the worker that hosts the actor caches the new record
    // instead of reading it back when its first event or claim comes. A lost one costs that read.
    this.#connections.nats.publish(subjects.actorWritten(type, stored.name), `${outcome.revision}\n${actorValue}`)
    if (!outcome.published) this.#outbox.publishInBackground([entry], outcome.revision)
    return { ...resource, metadata: { ...resource.metadata, revision: outcome.revision } }
  }

  /**
   * Commits a write. etcd's NOSPACE answer is ambiguous: a write refused at the door was not
   * applied, the one that crossed the quota was (and still got NOSPACE). So after one, the write
   * is looked for (`landed` on the resource's key) and tried again, once space was reclaimed,
   * only when it is not in; `published` says the outbox sweeper already sent its events.
   */
  async #commitWrite(
    entryKey: string,
    resourceKey: string,
    landed: (resource: StoredValue | undefined) => boolean,
    write: TxnWrite,
  ): Promise<{ succeeded: boolean; revision: number; published?: boolean }> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#batcher.commit(write)
      } catch (error) {
        if (!isEtcdNoSpace(error)) throw error
        const { values, revision } = await readKeys(this.#connections.etcd, [resourceKey, entryKey])
        const [resource, entry] = values
        if (landed(resource))
          return {
            succeeded: true,
            revision: entry?.modRevision ?? resource?.modRevision ?? revision,
            published: !entry,
          }
        if (attempt === 2) throw error
      }
    }
  }
}
