import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * Longest value kept in the environment: Linux refuses a string over 128 KiB (E2BIG) and every
 * system all of them together over 1–2 MiB, so anything longer goes to a file.
 */
const MAX_ENV_VALUE_BYTES = 64 * 1024
/** Most bytes the spec and step values take in the environment together; the rest go to files. */
const MAX_ENV_TOTAL_BYTES = 512 * 1024

/** A step's inputs: variables, and files (path → content) the variables point to. */
export interface StepInputs {
  readonly env: Record<string, string>
  readonly files: ReadonlyMap<string, string>
}

const envName = (text: string): string => text.toUpperCase().replace(/[^A-Z0-9_]/g, '_')
const asText = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value))
// No variable can hold a NUL; a file holds the value as it is.
const clean = (value: string): string => value.replace(/\0/g, '')

/**
 * The spec and the earlier steps' data as a step receives them, in `directory`: `spec.repoUrl`
 * becomes `SPEC_REPOURL`, `data.commit` of step `clone` becomes `STEP_CLONE_COMMIT` (strings as
 * they are, other values as JSON), the whole spec `CONVEYOR_SPEC` and all data `CONVEYOR_STEPS`
 * (JSON by step id). Both wholes are always files too (`CONVEYOR_SPEC_FILE`, `CONVEYOR_STEPS_FILE`);
 * a value too big for the environment is only a file, named by `<NAME>_FILE` instead of `<NAME>`.
 */
export function stepInputs(
  spec: Readonly<Record<string, unknown>>,
  steps: Readonly<Record<string, Readonly<Record<string, unknown>>>>,
  directory: string,
): StepInputs {
  const values: [string, string][] = Object.entries(spec).map(([key, value]) => [`SPEC_${envName(key)}`, asText(value)])
  for (const [step, data] of Object.entries(steps))
    for (const [key, value] of Object.entries(data))
      values.push([`STEP_${envName(step)}_${envName(key)}`, asText(value)])
  const wholeSpec = JSON.stringify(spec)
  const wholeSteps = JSON.stringify(steps)
  values.push(['CONVEYOR_SPEC', wholeSpec], ['CONVEYOR_STEPS', wholeSteps])

  const env: Record<string, string> = {}
  const files = new Map<string, string>([
    [join(directory, 'spec.json'), wholeSpec],
    [join(directory, 'steps.json'), wholeSteps],
  ])
  env.CONVEYOR_SPEC_FILE = join(directory, 'spec.json')
  env.CONVEYOR_STEPS_FILE = join(directory, 'steps.json')
  let budget = MAX_ENV_TOTAL_BYTES
  for (const [name, value] of values) {
    const size = Buffer.byteLength(name) + Buffer.byteLength(value) + 2
    if (size <= MAX_ENV_VALUE_BYTES && size <= budget) {
      env[name] = clean(value)
      budget -= size
    } else if (name !== 'CONVEYOR_SPEC' && name !== 'CONVEYOR_STEPS') {
      const file = join(directory, name)
      files.set(file, value)
      env[`${name}_FILE`] = file
    }
  }
  return { env, files }
}

/** Writes the inputs' files, readable by this user only (a spec may hold secrets). */
export async function writeStepInputs(inputs: StepInputs): Promise<void> {
  for (const [path, content] of inputs.files) await writeFile(path, content, { mode: 0o600 })
}
