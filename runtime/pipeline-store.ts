import { randomUUID } from 'node:crypto'
import type { Connections } from './connections.ts'
import { compare, op, readKeys, readPrefix } from './etcd-ops.ts'
import { conflict, invalid, notFound } from './errors.ts'
import { keys, subjects } from './keys.ts'
import { retryOnConflict } from './retry.ts'
import type { Outbox } from './outbox.ts'
import type { TxnBatcher } from './txn-batcher.ts'
import { staleRevision } from './definition-store.ts'
import { checkSteps, type Pipeline, type PipelineInput } from '../definitions/pipeline.ts'
import type { ObjectMetadata } from '../definitions/objects.ts'

type StoredPipeline = Omit<Pipeline, 'metadata'> & { metadata: Omit<ObjectMetadata, 'revision'> }

const withRevision = (stored: StoredPipeline, revision: number): Pipeline => ({
  ...stored,
  metadata: { ...stored.metadata, revision },
})

/**
 * Pipelines in etcd: `/conveyor/pipelines/{name}`. A pipeline is checked when saved (ids, needs,
 * cycles, its resource type exists) and a run copies its steps when it starts, so changing or
 * deleting a pipeline never disturbs runs in progress.
 */
export class PipelineStore {
  readonly #connections: Connections
  readonly #batcher: TxnBatcher
  readonly #outbox: Outbox

  constructor(connections: Connections, batcher: TxnBatcher, outbox: Outbox) {
    this.#connections = connections
    this.#batcher = batcher
    this.#outbox = outbox
  }

  /** The pipeline and the revision it was read at, or undefined. */
  async read(name: string): Promise<{ pipeline: Pipeline; revision: number } | undefined> {
    const { values } = await readKeys(this.#connections.etcd, [keys.pipeline(name)])
    const value = values[0]
    return value
      ? {
          pipeline: withRevision(JSON.parse(value.value) as StoredPipeline, value.modRevision),
          revision: value.modRevision,
        }
      : undefined
  }

  async get(name: string): Promise<Pipeline> {
    const found = await this.read(name)
    if (!found) throw notFound(`pipeline ${name} not found`)
    return found.pipeline
  }

  async list(): Promise<Pipeline[]> {
    const { values } = await readPrefix(this.#connections.etcd, keys.pipelines())
    return values.map((v) => withRevision(JSON.parse(v.value) as StoredPipeline, v.modRevision))
  }

  async create(input: PipelineInput): Promise<Pipeline> {
    check(input)
    const now = new Date().toISOString()
    const result = await this.#write(
      build(input, { uid: randomUUID(), version: 1, createdAt: now, updatedAt: now, labels: labelsOf(input) ?? {} }),
      0,
      'pipeline.created',
    )
    if (!result) throw conflict('already-exists', `pipeline ${input.name} already exists`)
    return result
  }

  async update(name: string, input: PipelineInput, expectedRevision?: number): Promise<Pipeline> {
    if (input.name !== name)
      throw invalid(`name ${input.name} does not match the URL (${name})`, [
        { path: '/name', message: `must be ${name}` },
      ])
    check(input)
    return await retryOnConflict(
      async () => {
        const current = await this.read(name)
        if (!current) throw notFound(`pipeline ${name} not found`)
        if (expectedRevision !== undefined && expectedRevision !== current.revision)
          throw staleRevision('pipeline', name, expectedRevision, current.revision)
        const meta = current.pipeline.metadata
        const stored = build(input, {
          uid: meta.uid,
          createdAt: meta.createdAt,
          version: meta.version + 1,
          updatedAt: new Date().toISOString(),
          labels: labelsOf(input) ?? meta.labels,
        })
        const result = await this.#write(stored, current.revision, 'pipeline.updated')
        if (!result && expectedRevision !== undefined)
          throw staleRevision('pipeline', name, expectedRevision, undefined)
        return result
      },
      { exhausted: () => conflict('contention', `pipeline ${name} kept changing; retry`) },
    )
  }

  async delete(name: string, expectedRevision?: number): Promise<Pipeline> {
    const current = await this.read(name)
    if (!current) throw notFound(`pipeline ${name} not found`)
    if (expectedRevision !== undefined && expectedRevision !== current.revision)
      throw staleRevision('pipeline', name, expectedRevision, current.revision)
    const { entry, op: outboxOp } = this.#outbox.entry(subjects.pipeline(name), {
      kind: 'pipeline.deleted',
      uid: current.pipeline.metadata.uid,
      revision: 0,
      time: new Date().toISOString(),
      name,
    })
    const outcome = await this.#batcher.commit({
      compares: [compare.modRevision(keys.pipeline(name), current.revision)],
      ops: [op.delete(keys.pipeline(name)), outboxOp],
    })
    if (!outcome.succeeded) throw staleRevision('pipeline', name, current.revision, undefined)
    await this.#outbox.publish([entry], outcome.revision)
    return current.pipeline
  }

  /** Writes when the key is at `expectedRevision` (0: absent) and the resource type still exists. */
  async #write(
    stored: StoredPipeline,
    expectedRevision: number,
    kind: 'pipeline.created' | 'pipeline.updated',
  ): Promise<Pipeline | undefined> {
    const { values } = await readKeys(this.#connections.etcd, [keys.definition(stored.resource)])
    const definition = values[0]
    if (!definition)
      throw invalid(`resource definition ${stored.resource} does not exist; create it before its pipelines`, [
        { path: '/resource', message: `resource definition ${stored.resource} not found` },
      ])
    const key = keys.pipeline(stored.name)
    const { entry, op: outboxOp } = this.#outbox.entry(subjects.pipeline(stored.name), {
      kind,
      uid: stored.metadata.uid,
      revision: 0,
      time: stored.metadata.updatedAt,
      name: stored.name,
    })
    const outcome = await this.#batcher.commit({
      compares: [
        expectedRevision === 0 ? compare.absent(key) : compare.modRevision(key, expectedRevision),
        compare.modRevision(keys.definition(stored.resource), definition.modRevision),
      ],
      ops: [op.put(key, JSON.stringify(stored)), outboxOp],
    })
    if (!outcome.succeeded) {
      // Only the definition moved (harmless): write again. Otherwise the pipeline changed: the caller decides.
      const current = await this.read(stored.name)
      const unchanged = expectedRevision === 0 ? current === undefined : current?.revision === expectedRevision
      return unchanged ? this.#write(stored, expectedRevision, kind) : undefined
    }
    await this.#outbox.publish([entry], outcome.revision)
    return withRevision(stored, outcome.revision)
  }
}

function check(input: PipelineInput): void {
  const errors = checkSteps(input.steps)
  if (errors.length > 0)
    throw invalid(`invalid pipeline ${input.name}: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`, errors)
}

function labelsOf(input: PipelineInput): Record<string, string> | undefined {
  return input.labels ?? input.metadata?.labels
}

function build(input: PipelineInput, metadata: StoredPipeline['metadata']): StoredPipeline {
  return {
    name: input.name,
    resource: input.resource,
    ...(input.description !== undefined ? { description: input.description } : {}),
    steps: input.steps,
    metadata,
  }
}
