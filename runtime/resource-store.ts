import { randomUUID } from 'node:crypto'
import type { Connections } from './connections.ts'
import { compare, op, readKeys, readPrefix, readRange, type StoredValue } from './etcd-ops.ts'
import { conflict, invalid, notFound } from './errors.ts'
import { keys, subjects } from './keys.ts'
import type { Outbox } from './outbox.ts'
import type { TxnBatcher } from './txn-batcher.ts'
import { staleRevision, type DefinitionStore } from './definition-store.ts'
import type { ResourceInput } from '../definitions/api-types.ts'
import type { ConveyorEvent, DriverOutcome, EventKind, ObjectMetadata, Resource, ResourceStatus } from '../definitions/objects.ts'

type StoredMetadata = Omit<ObjectMetadata, 'revision'>

/** What etcd holds at `/conveyor/resources/{type}/{name}`: the desired state and its run. */
interface StoredResource {
  readonly name: string
  readonly resource: string
  readonly pipeline?: string
  readonly spec: Record<string, unknown>
  readonly metadata: StoredMetadata
  readonly run: { readonly runid: string; readonly state: string }
}

/** What etcd holds at `/conveyor/status/{type}/{name}`: observed state, written by drivers. */
interface StoredStatus {
  readonly uid: string
  readonly drivers: Record<string, DriverOutcome>
}

export interface ListOptions {
  readonly labelSelector?: LabelSelector
  readonly limit?: number
  readonly continueAfter?: string
}

export type LabelSelector = (labels: Readonly<Record<string, string>>) => boolean

const MAX_WRITE_ATTEMPTS = 5

function present(stored: StoredResource, revision: number, status: StoredStatus | undefined): Resource {
  const drivers = status && status.uid === stored.metadata.uid ? status.drivers : {}
  const resourceStatus: ResourceStatus = { state: stored.run.state, runid: stored.run.runid, context: {}, drivers }
  return {
    name: stored.name,
    resource: stored.resource,
    ...(stored.pipeline !== undefined ? { pipeline: stored.pipeline } : {}),
    spec: stored.spec,
    metadata: { ...stored.metadata, revision },
    status: resourceStatus,
    runid: stored.run.runid,
    version: stored.metadata.version,
  }
}

/** Resources in etcd, every write one transaction with a revision compare and an outbox entry. */
export class ResourceStore {
  readonly #connections: Connections
  readonly #batcher: TxnBatcher
  readonly #outbox: Outbox
  readonly #definitions: DefinitionStore

  constructor(connections: Connections, batcher: TxnBatcher, outbox: Outbox, definitions: DefinitionStore) {
    this.#connections = connections
    this.#batcher = batcher
    this.#outbox = outbox
    this.#definitions = definitions
  }

  async create(input: ResourceInput): Promise<Resource> {
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const definition = await this.#validated(input, attempt > 0)
      const now = new Date().toISOString()
      const stored = this.#build(input, { uid: randomUUID(), version: 1, createdAt: now, updatedAt: now, labels: input.labels ?? {} })
      const resource = await this.#commit(stored, 'created', [compare.modRevision(keys.definition(input.resource), definition), compare.absent(keys.resource(input.resource, input.name))])
      if (resource) return resource
      const { values } = await readKeys(this.#connections.etcd, [keys.resource(input.resource, input.name)])
      if (values[0]) throw conflict('already-exists', `resource ${input.resource}/${input.name} already exists`)
    }
    throw conflict('contention', `resource definition ${input.resource} kept changing; retry`)
  }

  async get(type: string, name: string): Promise<Resource> {
    const { values } = await readKeys(this.#connections.etcd, [keys.resource(type, name), keys.status(type, name)])
    const [resource, status] = values
    if (!resource) throw notFound(`resource ${type}/${name} not found`)
    return present(JSON.parse(resource.value) as StoredResource, resource.modRevision, status ? (JSON.parse(status.value) as StoredStatus) : undefined)
  }

  async getVersion(type: string, name: string, version: number): Promise<Resource> {
    const { values } = await readKeys(this.#connections.etcd, [keys.version(type, name, version), keys.resource(type, name)])
    const [copy, current] = values
    if (!copy) throw notFound(current ? `resource ${type}/${name} has no version ${version}` : `resource ${type}/${name} not found`)
    return present(JSON.parse(copy.value) as StoredResource, copy.modRevision, undefined)
  }

  /** Lists the version numbers stored for a resource, oldest first. */
  async versions(type: string, name: string): Promise<number[]> {
    const { values } = await readPrefix(this.#connections.etcd, keys.versions(type, name))
    if (values.length === 0) await this.get(type, name)
    return values.map((v) => (JSON.parse(v.value) as StoredResource).metadata.version)
  }

  async list(type: string, options: ListOptions = {}): Promise<{ items: Resource[]; continueAfter?: string }> {
    const limit = options.limit ?? 500
    const items: Resource[] = []
    let startAfter = options.continueAfter ? keys.resource(type, options.continueAfter) : undefined
    let revision: number | undefined
    for (;;) {
      const page = await readPrefix(this.#connections.etcd, keys.resources(type), { limit: Math.min(500, limit + 1), ...(startAfter ? { startAfter } : {}), ...(revision ? { revision } : {}) })
      revision ??= page.revision
      const statuses = await this.#statuses(type, page.values, revision)
      for (const value of page.values) {
        const stored = JSON.parse(value.value) as StoredResource
        if (options.labelSelector && !options.labelSelector(stored.metadata.labels)) continue
        if (items.length === limit) return { items, continueAfter: items.at(-1)!.name }
        items.push(present(stored, value.modRevision, statuses.get(stored.name)))
      }
      if (!page.more || page.values.length === 0) return { items }
      startAfter = page.values.at(-1)!.key
    }
  }

  async #statuses(type: string, values: readonly StoredValue[], revision: number): Promise<Map<string, StoredStatus>> {
    const result = new Map<string, StoredStatus>()
    const names = values.map((v) => v.key.slice(keys.resources(type).length))
    if (names.length === 0) return result
    const found = await readRange(this.#connections.etcd, keys.status(type, names[0]!), keys.status(type, names.at(-1)!) + '\0', revision)
    const wanted = new Set(names)
    for (const s of found) {
      const name = s.key.slice(keys.statuses(type).length)
      if (wanted.has(name)) result.set(name, JSON.parse(s.value) as StoredStatus)
    }
    return result
  }

  /**
   * Replaces spec, labels and pipeline of a resource, starting a new run. Server-owned fields of
   * the input are ignored. With `expectedRevision` a concurrent change answers 409.
   */
  async update(type: string, name: string, input: ResourceInput, expectedRevision?: number): Promise<Resource> {
    if (input.name !== name) throw invalid(`name ${input.name} does not match the URL (${name})`, [{ path: '/name', message: `must be ${name}` }])
    if (input.resource !== type) throw invalid(`resource ${input.resource} does not match the URL (${type})`, [{ path: '/resource', message: `must be ${type}` }])
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const { values } = await readKeys(this.#connections.etcd, [keys.resource(type, name)])
      const current = values[0]
      if (!current) throw notFound(`resource ${type}/${name} not found`)
      if (expectedRevision !== undefined && expectedRevision !== current.modRevision) throw staleRevision('resource', `${type}/${name}`, expectedRevision, current.modRevision)
      const definition = await this.#validated(input, attempt > 0)
      const previous = JSON.parse(current.value) as StoredResource
      const stored = this.#build(input, { ...previous.metadata, version: previous.metadata.version + 1, updatedAt: new Date().toISOString(), labels: input.labels ?? previous.metadata.labels })
      const resource = await this.#commit(stored, 'updated', [compare.modRevision(keys.definition(type), definition), compare.modRevision(keys.resource(type, name), current.modRevision)])
      if (resource) return resource
    }
    throw conflict('contention', `resource ${type}/${name} kept changing; retry`)
  }

  async delete(type: string, name: string, expectedRevision?: number): Promise<Resource> {
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const { values } = await readKeys(this.#connections.etcd, [keys.resource(type, name), keys.status(type, name)])
      const [current, status] = values
      if (!current) throw notFound(`resource ${type}/${name} not found`)
      if (expectedRevision !== undefined && expectedRevision !== current.modRevision) throw staleRevision('resource', `${type}/${name}`, expectedRevision, current.modRevision)
      const stored = JSON.parse(current.value) as StoredResource
      const last = present(stored, current.modRevision, status ? (JSON.parse(status.value) as StoredStatus) : undefined)
      const { entry, op: outboxOp } = this.#outbox.entry(subjects.resource(type, name), this.#event('deleted', stored, last))
      const outcome = await this.#batcher.commit({
        compares: [compare.modRevision(keys.resource(type, name), current.modRevision)],
        ops: [op.delete(keys.resource(type, name)), op.delete(keys.status(type, name)), op.deletePrefix(keys.versions(type, name)), outboxOp],
      })
      if (outcome.succeeded) {
        this.#outbox.publishInBackground([entry], outcome.revision)
        return last
      }
    }
    throw conflict('contention', `resource ${type}/${name} kept changing; retry`)
  }

  /**
   * Records what a driver reported for the run it handled and emits a `driver.result` event.
   * Returns false when the resource is gone or was replaced by a newer incarnation.
   */
  async recordDriverOutcome(type: string, name: string, uid: string, driver: string, outcome: DriverOutcome): Promise<boolean> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const { values } = await readKeys(this.#connections.etcd, [keys.resource(type, name), keys.status(type, name)])
      const [current, status] = values
      if (!current) return false
      const stored = JSON.parse(current.value) as StoredResource
      if (stored.metadata.uid !== uid) return false
      const previous = status ? (JSON.parse(status.value) as StoredStatus) : undefined
      const recorded = previous?.uid === uid ? previous.drivers[driver] : undefined
      if (recorded && recorded.forRevision > outcome.forRevision) return true
      const next: StoredStatus = { uid, drivers: { ...(previous?.uid === uid ? previous.drivers : {}), [driver]: outcome } }
      const { entry, op: outboxOp } = this.#outbox.entry(subjects.outcome(type, name), {
        kind: 'driver.result', uid, revision: 0, time: outcome.finishedAt, type, name, runid: outcome.runid, version: stored.metadata.version, driver, outcome,
      })
      const committed = await this.#batcher.commit({
        compares: [compare.modRevision(keys.resource(type, name), current.modRevision), compare.modRevision(keys.status(type, name), status?.modRevision ?? 0)],
        ops: [op.put(keys.status(type, name), JSON.stringify(next)), outboxOp],
      })
      if (committed.succeeded) {
        await this.#outbox.publish([entry], committed.revision)
        return true
      }
    }
    throw conflict('contention', `status of ${type}/${name} kept changing`)
  }

  /** Reads the outcome a driver recorded for a resource incarnation, if any. */
  async driverOutcome(type: string, name: string, uid: string, driver: string): Promise<DriverOutcome | undefined> {
    const { values } = await readKeys(this.#connections.etcd, [keys.status(type, name)])
    if (!values[0]) return undefined
    const status = JSON.parse(values[0].value) as StoredStatus
    return status.uid === uid ? status.drivers[driver] : undefined
  }

  /** Fetches the definition (fresh after a failed compare) and validates the spec; returns its revision. */
  async #validated(input: ResourceInput, fresh: boolean): Promise<number> {
    const compiled = await this.#definitions.compiled(input.resource, { fresh })
    if (!compiled) throw notFound(`resource definition ${input.resource} not found`)
    const errors = compiled.validate(input.spec)
    if (errors.length > 0) throw invalid(`spec does not match resource definition ${input.resource}: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`, errors)
    return compiled.revision
  }

  #build(input: ResourceInput, metadata: StoredMetadata): StoredResource {
    return {
      name: input.name,
      resource: input.resource,
      ...(input.pipeline !== undefined ? { pipeline: input.pipeline } : {}),
      spec: input.spec,
      metadata,
      run: { runid: randomUUID(), state: 'pending' },
    }
  }

  #event(kind: EventKind, stored: StoredResource, object: Resource): ConveyorEvent {
    return { kind, uid: stored.metadata.uid, revision: 0, time: stored.metadata.updatedAt, type: stored.resource, name: stored.name, runid: stored.run.runid, version: stored.metadata.version, object }
  }

  async #commit(stored: StoredResource, kind: 'created' | 'updated', compares: Parameters<TxnBatcher['commit']>[0]['compares']): Promise<Resource | undefined> {
    const type = stored.resource
    const resource = present(stored, 0, undefined)
    const { entry, op: outboxOp } = this.#outbox.entry(subjects.resource(type, stored.name), this.#event(kind, stored, resource))
    const value = JSON.stringify(stored)
    const outcome = await this.#batcher.commit({
      compares,
      ops: [op.put(keys.resource(type, stored.name), value), op.put(keys.version(type, stored.name, stored.metadata.version), value), outboxOp],
    })
    if (!outcome.succeeded) return undefined
    this.#outbox.publishInBackground([entry], outcome.revision)
    return { ...resource, metadata: { ...resource.metadata, revision: outcome.revision } }
  }
}
