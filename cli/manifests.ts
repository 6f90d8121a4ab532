import { readFile, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import YAML from 'yaml'

/** The kinds of object a manifest may hold, in the order they must exist (a resource needs its type). */
export const KINDS = ['ResourceDefinition', 'Pipeline', 'Resource'] as const
export type Kind = (typeof KINDS)[number]

/** One object of a manifest, with where it came from (`file.yaml#2`). */
export interface Manifest {
  readonly kind: Kind
  readonly object: Record<string, unknown>
  readonly source: string
}

const ALIASES: Readonly<Record<string, Kind>> = {
  resourcedefinition: 'ResourceDefinition',
  definition: 'ResourceDefinition',
  pipeline: 'Pipeline',
  resource: 'Resource',
}

/** `kind:` as written, or inferred: `schema` makes a definition, `steps` a pipeline, `spec` a resource. */
function kindOf(object: Record<string, unknown>, source: string): Kind {
  if (typeof object.kind === 'string') {
    const kind = ALIASES[object.kind.toLowerCase()]
    if (!kind) throw new TypeError(`${source}: kind ${JSON.stringify(object.kind)} is not one of ${KINDS.join(', ')}`)
    return kind
  }
  if ('schema' in object) return 'ResourceDefinition'
  if ('steps' in object) return 'Pipeline'
  if ('spec' in object && 'resource' in object) return 'Resource'
  throw new TypeError(`${source}: cannot tell the kind: set kind: ${KINDS.join(' | ')}`)
}

async function filesOf(path: string): Promise<string[]> {
  const info = await stat(path).catch(() => undefined)
  if (!info) throw new TypeError(`-f ${path}: no such file or directory`)
  if (!info.isDirectory()) return [path]
  const entries = (await readdir(path)).filter((name) => /\.(ya?ml|json)$/.test(name)).sort()
  return entries.map((name) => join(path, name))
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/** Every object of the files (a directory: its .yaml, .yml and .json files; `-`: stdin), multi-document. */
export async function loadManifests(paths: readonly string[]): Promise<Manifest[]> {
  const manifests: Manifest[] = []
  for (const path of paths) {
    const files = path === '-' ? ['-'] : await filesOf(path)
    for (const file of files) {
      const text = file === '-' ? await readStdin() : await readFile(file, 'utf8')
      const name = file === '-' ? 'stdin' : file
      const documents = YAML.parseAllDocuments(text)
      for (const [i, document] of documents.entries()) {
        const source = documents.length > 1 ? `${name}#${i + 1}` : name
        if (document.errors.length > 0) throw new TypeError(`${source}: ${document.errors[0]!.message.split('\n')[0]}`)
        const value = document.toJS() as unknown
        if (value === null || value === undefined) continue
        // A JSON array, or a `List` of items, holds several objects.
        const items = Array.isArray(value)
          ? value
          : typeof value === 'object' && (value as { kind?: unknown }).kind === 'List'
            ? ((value as { items?: unknown[] }).items ?? [])
            : [value]
        for (const item of items) {
          if (typeof item !== 'object' || item === null || Array.isArray(item))
            throw new TypeError(`${source}: each document must be an object`)
          const object = item as Record<string, unknown>
          const { kind: _, apiVersion: __, ...rest } = object
          manifests.push({ kind: kindOf(object, source), object: rest, source })
        }
      }
    }
  }
  return manifests
}

/** `resourcedefinition/build`, `pipeline/ship`, `build/web` (a resource by its type). */
export function displayName(manifest: { kind: Kind; object: Record<string, unknown> }): string {
  const name = String(manifest.object.name ?? '?')
  if (manifest.kind === 'ResourceDefinition') return `resourcedefinition/${name}`
  if (manifest.kind === 'Pipeline') return `pipeline/${name}`
  return `${String(manifest.object.resource ?? '?')}/${name}`
}
