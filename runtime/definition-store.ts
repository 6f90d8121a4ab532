import { randomUUID } from 'node:crypto'
import type { Connections } from './connections.ts'
import { compare, op, readKeys, readPrefix } from './etcd-ops.ts'
import { conflict, invalid, notFound, type FieldError } from './errors.ts'
import { keys, subjects } from './keys.ts'
import { retryOnConflict } from './retry.ts'
import type { Outbox } from './outbox.ts'
import type { TxnBatcher } from './txn-batcher.ts'
import { checkUserSchema, compileSpecValidator, type SpecValidator } from '../definitions/user-schema.ts'
import { checkLifecycle } from '../definitions/lifecycle.ts'
import type { DefinitionInput } from '../definitions/api-types.ts'
import type { ResourceDefinition } from '../definitions/objects.ts'

/** A definition as read from etcd, with its validator compiled once per revision. */
export interface CompiledDefinition {
  readonly definition: ResourceDefinition
  readonly revision: number
  readonly validate: SpecValidator
}

type StoredDefinition = Omit<ResourceDefinition, 'metadata'> & {
  metadata: Omit<ResourceDefinition['metadata'], 'revision'>
}

const withRevision = (stored: StoredDefinition, revision: number): ResourceDefinition => ({
  ...stored,
  metadata: { ...stored.metadata, revision },
})

/** Resource definitions in etcd: `/conveyor/definitions/{name}`. */
export class DefinitionStore {
  readonly #connections: Connections
  readonly #batcher: TxnBatcher
  readonly #outbox: Outbox
  readonly #compiled = new Map<string, CompiledDefinition>()
  readonly #lifecycleId: (config: Record<string, unknown>) => string
  readonly #checkMachine: (config: Record<string, unknown>) => readonly FieldError[]

  /**
   * `lifecycleId` names a lifecycle by its content; `checkMachine` builds it once so that what the
   * declarative check lets through is also a valid XState machine whose initial state fits the
   * limits (it returns the problems it finds).
   */
  constructor(
    connections: Connections,
    batcher: TxnBatcher,
    outbox: Outbox,
    lifecycles: {
      id(config: Record<string, unknown>): string
      check(config: Record<string, unknown>): readonly FieldError[]
    },
  ) {
    this.#connections = connections
    this.#batcher = batcher
    this.#outbox = outbox
    this.#lifecycleId = lifecycles.id
    this.#checkMachine = lifecycles.check
  }

  #checkInput(input: DefinitionInput): void {
    checkUserSchema(input.schema)
    if (input.lifecycle === undefined) return
    const declared = checkLifecycle(input.lifecycle)
    const errors = declared.length > 0 ? declared : this.#checkMachine(input.lifecycle)
    if (errors.length > 0)
      throw invalid(`invalid lifecycle: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`, errors)
  }

  /** The definition and its compiled validator; cached until its revision changes. */
  async compiled(name: string, options: { fresh?: boolean } = {}): Promise<CompiledDefinition | undefined> {
    const cached = this.#compiled.get(name)
    if (cached && !options.fresh) return cached
    const { values } = await readKeys(this.#connections.etcd, [keys.definition(name)])
    const stored = values[0]
    if (!stored) {
      this.#compiled.delete(name)
      return undefined
    }
    if (cached && cached.revision === stored.modRevision) return cached
    const definition = withRevision(JSON.parse(stored.value) as StoredDefinition, stored.modRevision)
    const compiled = { definition, revision: stored.modRevision, validate: compileSpecValidator(definition.schema) }
    this.#compiled.set(name, compiled)
    return compiled
  }

  forget(name: string): void {
    this.#compiled.delete(name)
  }

  async get(name: string): Promise<ResourceDefinition> {
    const compiled = await this.compiled(name, { fresh: true })
    if (!compiled) throw notFound(`resource definition ${name} not found`)
    return compiled.definition
  }

  async list(): Promise<ResourceDefinition[]> {
    const { values } = await readPrefix(this.#connections.etcd, keys.definitions())
    return values.map((v) => withRevision(JSON.parse(v.value) as StoredDefinition, v.modRevision))
  }

  async create(input: DefinitionInput): Promise<ResourceDefinition> {
    this.#checkInput(input)
    const now = new Date().toISOString()
    const stored = this.#build(input, { uid: randomUUID(), version: 1, createdAt: now, updatedAt: now })
    const result = await this.#write(stored, 0, 'definition.created')
    if (!result) throw conflict('already-exists', `resource definition ${input.name} already exists`)
    return result
  }

  /**
   * Replaces a definition. `expectedRevision` (from `If-Match` or `metadata.revision`) makes it
   * conditional; without one the latest revision is replaced.
   */
  async update(name: string, input: DefinitionInput, expectedRevision?: number): Promise<ResourceDefinition> {
    if (input.name !== name)
      throw invalid(`name ${input.name} does not match the URL (${name})`, [
        { path: '/name', message: `must be ${name}` },
      ])
    this.#checkInput(input)
    return await retryOnConflict(
      async () => {
        const current = await this.#read(name)
        if (!current) throw notFound(`resource definition ${name} not found`)
        if (expectedRevision !== undefined && expectedRevision !== current.revision)
          throw staleRevision('resource definition', name, expectedRevision, current.revision)
        const stored = this.#build(input, {
          ...current.stored.metadata,
          version: current.stored.metadata.version + 1,
          updatedAt: new Date().toISOString(),
        })
        const result = await this.#write(stored, current.revision, 'definition.updated')
        if (!result && expectedRevision !== undefined)
          throw staleRevision('resource definition', name, expectedRevision, undefined)
        return result
      },
      { exhausted: () => conflict('contention', `resource definition ${name} kept changing; retry`) },
    )
  }

  /** Creates or replaces: `created` tells which happened. */
  async apply(input: DefinitionInput): Promise<{ definition: ResourceDefinition; created: boolean }> {
    this.#checkInput(input)
    return await retryOnConflict(
      async () => {
        const current = await this.#read(input.name)
        if (!current) {
          const now = new Date().toISOString()
          const result = await this.#write(
            this.#build(input, { uid: randomUUID(), version: 1, createdAt: now, updatedAt: now }),
            0,
            'definition.created',
          )
          return result ? { definition: result, created: true } : undefined
        }
        const stored = this.#build(input, {
          ...current.stored.metadata,
          version: current.stored.metadata.version + 1,
          updatedAt: new Date().toISOString(),
        })
        const result = await this.#write(stored, current.revision, 'definition.updated')
        return result ? { definition: result, created: false } : undefined
      },
      { exhausted: () => conflict('contention', `resource definition ${input.name} kept changing; retry`) },
    )
  }

  /** Deletes a definition that no resource uses any more. */
  async delete(name: string, expectedRevision?: number): Promise<ResourceDefinition> {
    const current = await this.#read(name)
    if (!current) throw notFound(`resource definition ${name} not found`)
    if (expectedRevision !== undefined && expectedRevision !== current.revision)
      throw staleRevision('resource definition', name, expectedRevision, current.revision)
    const inUse = await this.#connections.etcd.getAll().prefix(keys.resources(name)).count()
    if (inUse > 0)
      throw conflict('in-use', `resource definition ${name} still has ${inUse} resource(s); delete them first`)
    const definition = withRevision(current.stored, current.revision)
    const { entry, op: outboxOp } = this.#outbox.entry(subjects.definition(name), {
      kind: 'definition.deleted',
      uid: definition.metadata.uid,
      revision: 0,
      time: new Date().toISOString(),
      name,
      object: definition,
    })
    // The range compare makes "no resource of this type" part of the transaction, so a create racing the delete cannot slip in.
    const outcome = await this.#batcher.commit({
      compares: [compare.modRevision(keys.definition(name), current.revision), compare.noneUnder(keys.resources(name))],
      ops: [op.delete(keys.definition(name)), outboxOp],
    })
    if (!outcome.succeeded) {
      const left = await this.#connections.etcd.getAll().prefix(keys.resources(name)).count()
      if (left > 0)
        throw conflict('in-use', `resource definition ${name} still has ${left} resource(s); delete them first`)
      throw staleRevision('resource definition', name, current.revision, undefined)
    }
    this.#compiled.delete(name)
    await this.#outbox.publish([entry], outcome.revision)
    return definition
  }

  #build(
    input: DefinitionInput,
    meta: Omit<StoredDefinition['metadata'], 'labels'> & { labels?: Readonly<Record<string, string>> },
  ): StoredDefinition {
    return {
      name: input.name,
      version: input.version ?? '1',
      ...(input.description !== undefined ? { description: input.description } : {}),
      schema: input.schema,
      ...(input.lifecycle !== undefined ? { lifecycle: input.lifecycle } : {}),
      metadata: {
        ...meta,
        labels: input.labels ?? (input.metadata?.labels as Record<string, string> | undefined) ?? meta.labels ?? {},
      },
    }
  }

  async #read(name: string): Promise<{ stored: StoredDefinition; revision: number } | undefined> {
    const { values } = await readKeys(this.#connections.etcd, [keys.definition(name)])
    const value = values[0]
    return value ? { stored: JSON.parse(value.value) as StoredDefinition, revision: value.modRevision } : undefined
  }

  async #write(
    stored: StoredDefinition,
    expectedRevision: number,
    kind: 'definition.created' | 'definition.updated',
  ): Promise<ResourceDefinition | undefined> {
    const key = keys.definition(stored.name)
    const { entry, op: outboxOp } = this.#outbox.entry(subjects.definition(stored.name), {
      kind,
      uid: stored.metadata.uid,
      revision: 0,
      time: stored.metadata.updatedAt,
      name: stored.name,
      object: withRevision(stored, 0),
    })
    const lifecycleOps = stored.lifecycle
      ? [op.put(keys.lifecycle(this.#lifecycleId(stored.lifecycle)), JSON.stringify(stored.lifecycle))]
      : []
    const outcome = await this.#batcher.commit({
      compares: [expectedRevision === 0 ? compare.absent(key) : compare.modRevision(key, expectedRevision)],
      ops: [op.put(key, JSON.stringify(stored)), ...lifecycleOps, outboxOp],
    })
    if (!outcome.succeeded) return undefined
    await this.#outbox.publish([entry], outcome.revision)
    const definition = withRevision(stored, outcome.revision)
    this.#compiled.set(stored.name, {
      definition,
      revision: outcome.revision,
      validate: compileSpecValidator(definition.schema),
    })
    return definition
  }
}

export function staleRevision(what: string, name: string, expected: number, actual: number | undefined) {
  return conflict(
    'stale-revision',
    `${what} ${name} has changed: you sent revision ${expected}${actual !== undefined ? `, the current one is ${actual}` : ''}; read it again and retry`,
  )
}
