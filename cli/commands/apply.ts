import { isDeepStrictEqual } from 'node:util'
import { ApiError } from '../../client/errors.ts'
import type { ConveyorClient } from '../../client/client.ts'
import { displayName, KINDS, loadManifests, type Manifest } from '../manifests.ts'
import { note, out, paint } from '../output.ts'
import { explain, openSession } from '../session.ts'
import type { TargetFlags } from '../contexts.ts'

type Outcome = 'created' | 'configured' | 'unchanged' | 'deleted'

const isNotFound = (error: unknown): boolean => error instanceof ApiError && error.status === 404
const orUndefined = <T>(promise: Promise<T>): Promise<T | undefined> =>
  promise.catch((error: unknown) => {
    if (isNotFound(error)) return undefined
    throw error
  })

/** The labels an object asks for, from `labels` or `metadata.labels`. */
const labelsOf = (object: Record<string, unknown>): unknown =>
  object.labels ?? (object.metadata as { labels?: unknown } | undefined)?.labels ?? {}

/** True when any field the manifest controls differs from what is stored. */
function differs(
  desired: Record<string, unknown>,
  current: Record<string, unknown>,
  fields: readonly string[],
): boolean {
  for (const field of fields) {
    if (field === 'version' && desired.version === undefined) continue
    if (!isDeepStrictEqual(desired[field] ?? null, current[field] ?? null)) return true
  }
  const currentLabels = (current.metadata as { labels?: unknown } | undefined)?.labels ?? {}
  return !isDeepStrictEqual(labelsOf(desired), currentLabels)
}

/** The fields of each kind that a manifest sets (the rest is the server's). */
const FIELDS = {
  ResourceDefinition: ['version', 'description', 'schema', 'lifecycle'],
  Pipeline: ['resource', 'description', 'steps'],
  Resource: ['pipeline', 'spec'],
} as const

async function applyOne(client: ConveyorClient, manifest: Manifest): Promise<Outcome> {
  const object = manifest.object
  const name = String(object.name)
  switch (manifest.kind) {
    case 'ResourceDefinition': {
      const current = await orUndefined(client.definitions.get(name))
      if (!current) return (await client.definitions.create(object as never), 'created')
      if (!differs(object, current as never, FIELDS.ResourceDefinition)) return 'unchanged'
      await client.definitions.update(name, object as never, { ifMatch: current.metadata.revision })
      return 'configured'
    }
    case 'Pipeline': {
      const current = await orUndefined(client.pipelines.get(name))
      if (!current) {
        const created = await client.pipelines.create(object as never)
        for (const warning of created.warnings ?? []) note(`warning: ${warning}`)
        return 'created'
      }
      if (!differs(object, current as never, FIELDS.Pipeline)) return 'unchanged'
      const updated = await client.pipelines.update(name, object as never, { ifMatch: current.metadata.revision })
      for (const warning of updated.warnings ?? []) note(`warning: ${warning}`)
      return 'configured'
    }
    case 'Resource': {
      const type = String(object.resource)
      const current = await orUndefined(client.resources.get(type, name))
      if (!current) return (await client.resources.create(object as never), 'created')
      if (!differs(object, current as never, FIELDS.Resource)) return 'unchanged'
      await client.resources.update(type, name, object as never, { ifMatch: current.metadata.revision })
      return 'configured'
    }
  }
}

async function deleteOne(client: ConveyorClient, manifest: Manifest): Promise<Outcome> {
  const name = String(manifest.object.name)
  if (manifest.kind === 'ResourceDefinition') await client.definitions.delete(name)
  else if (manifest.kind === 'Pipeline') await client.pipelines.delete(name)
  else await client.resources.delete(String(manifest.object.resource), name)
  return 'deleted'
}

/** Definitions first, then pipelines, then resources (deleting: the other way round); file order within a kind. */
const inOrder = (manifests: readonly Manifest[], reverse: boolean): Manifest[] => {
  const rank = (m: Manifest): number => KINDS.indexOf(m.kind) * (reverse ? -1 : 1)
  return manifests
    .map((m, i) => ({ m, i }))
    .sort((a, b) => rank(a.m) - rank(b.m) || a.i - b.i)
    .map(({ m }) => m)
}

export interface ApplyFlags extends TargetFlags {
  readonly filename: readonly string[]
  readonly ignoreNotFound?: boolean
}

/**
 * `conveyor apply -f FILE|DIR|-` (and `delete -f`): every object of the manifests, created or
 * updated (kubectl's `created` / `configured` / `unchanged` per object); an object that fails is
 * named with its reason and the rest still go. Exit 1 when any failed.
 */
export async function applyManifests(flags: ApplyFlags, mode: 'apply' | 'delete'): Promise<number> {
  if (flags.filename.length === 0) throw new TypeError(`${mode} needs -f FILE, DIR or - (stdin)`)
  const manifests = inOrder(await loadManifests(flags.filename), mode === 'delete')
  if (manifests.length === 0) throw new TypeError(`no objects in ${flags.filename.join(', ')}`)
  const { client, target } = openSession(flags)
  let failed = 0
  for (const manifest of manifests) {
    const what = displayName(manifest)
    try {
      const outcome = mode === 'apply' ? await applyOne(client, manifest) : await deleteOne(client, manifest)
      out(`${what} ${outcome === 'unchanged' ? outcome : paint('green', outcome)}`)
    } catch (error) {
      if (mode === 'delete' && flags.ignoreNotFound && isNotFound(error)) continue
      const reason = explain(error, target)
      if (reason === undefined) throw error
      failed++
      note(`${paint('red', 'error:')} ${what} (${manifest.source}): ${reason}`)
    }
  }
  return failed === 0 ? 0 : 1
}
