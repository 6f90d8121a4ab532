import { ApiError } from '../../client/errors.ts'
import type { TargetFlags } from '../contexts.ts'
import { out } from '../output.ts'
import { openSession } from '../session.ts'
import { splitTarget } from './get.ts'

const DEFINITIONS = new Set([
  'definition',
  'definitions',
  'def',
  'defs',
  'resourcedefinition',
  'resourcedefinitions',
  'rd',
])
const PIPELINES = new Set(['pipeline', 'pipelines', 'pl'])

/** `conveyor delete TYPE/NAME | definition NAME | pipeline NAME`. */
export async function deleteObject(
  flags: TargetFlags & { ignoreNotFound?: boolean },
  first: string,
  second: string | undefined,
): Promise<number> {
  const [what, name] = splitTarget(first, second)
  if (!name) throw new TypeError(`delete ${what} needs a NAME (or -f FILE)`)
  const { client } = openSession(flags)
  const kind = what.toLowerCase()
  try {
    if (DEFINITIONS.has(kind)) await client.definitions.delete(name)
    else if (PIPELINES.has(kind)) await client.pipelines.delete(name)
    else await client.resources.delete(what, name)
  } catch (error) {
    if (flags.ignoreNotFound && error instanceof ApiError && error.status === 404) return 0
    throw error
  }
  out(`${DEFINITIONS.has(kind) ? 'resourcedefinition' : PIPELINES.has(kind) ? 'pipeline' : what}/${name} deleted`)
  return 0
}
