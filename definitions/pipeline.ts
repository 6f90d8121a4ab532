import Type, { type Static } from 'typebox'
import { DURATION_FORMS, DURATION_PATTERN, parseDuration } from './durations.ts'
import type { FieldError } from './errors.ts'
import { EditableMetadata, Labels, Name } from './api-types.ts'
import type { ObjectMetadata } from './objects.ts'
import type { WorkClaim } from './work.ts'

/** A duration: milliseconds as a number, or text such as `500ms`, `30s`, `5m`, `1h30m`. */
const Duration = Type.Union(
  [
    Type.Integer({ minimum: 1, maximum: 7 * 24 * 3600 * 1000 }),
    Type.String({ pattern: DURATION_PATTERN, maxLength: 32 }),
  ],
  { errorMessage: `must be ${DURATION_FORMS} (at most 7d)` },
)

export const StepInput = Type.Object(
  {
    id: Name,
    name: Type.Optional(Type.String({ maxLength: 256 })),
    driver: Name,
    description: Type.Optional(Type.String({ maxLength: 4096 })),
    /**
     * Ids of steps that must succeed first. When no step of a pipeline has `needs`, steps run in
     * order (as in Conveyor CI); otherwise steps without `needs` start at once, in parallel.
     */
    needs: Type.Optional(Type.Array(Name, { maxItems: 64 })),
    /** Further attempts after a retryable failure (each after a backoff). @default 2 */
    retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 20 })),
    /** Longest one attempt may run before it counts as a (retryable) failure. */
    timeout: Type.Optional(Duration),
    /** Backoff before the first retry; it doubles per retry, up to 5 minutes. @default '1s' */
    backoff: Type.Optional(Duration),
    /**
     * A running step that no driver instance holds (its dispatch was never claimed, or its holder
     * vanished) is dispatched again after this long, and again each time it passes. @default '5m'
     */
    redispatchAfter: Type.Optional(Duration),
    /** For the built-in `shell` driver: commands run one after another, each with `sh -c`. */
    commands: Type.Optional(Type.Array(Type.String({ maxLength: 16_384 }), { maxItems: 256 })),
    /** For the built-in `shell` driver: extra environment variables. */
    env: Type.Optional(
      Type.Record(
        Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$', maxLength: 128 }),
        Type.String({ maxLength: 16_384 }),
      ),
    ),
  },
  { additionalProperties: false },
)
export type StepInput = Static<typeof StepInput>

export const PipelineInput = Type.Object(
  {
    name: Name,
    /** The resource type (definition name) whose resources this pipeline runs for. */
    resource: Name,
    description: Type.Optional(Type.String({ maxLength: 4096 })),
    steps: Type.Array(StepInput, { minItems: 1, maxItems: 100 }),
    labels: Type.Optional(Labels),
    metadata: Type.Optional(EditableMetadata),
    /** A write's answer may carry warnings; sent back, they are ignored. */
    warnings: Type.Optional(Type.Unknown()),
  },
  { additionalProperties: false },
)
export type PipelineInput = Static<typeof PipelineInput>

/** A stored pipeline, as the API returns it. */
export interface Pipeline {
  readonly name: string
  readonly resource: string
  readonly description?: string
  readonly steps: readonly StepInput[]
  readonly metadata: ObjectMetadata
}

/** One step as a run uses it: durations resolved, defaults applied. */
export interface StepPlan {
  readonly id: string
  readonly name: string
  readonly driver: string
  readonly needs: readonly string[]
  readonly retries: number
  readonly timeoutMs?: number
  readonly backoffMs: number
  /** Absent in runs planned before it existed: the default applies. */
  readonly redispatchMs?: number
  readonly commands?: readonly string[]
  readonly env?: Readonly<Record<string, string>>
}

export const DEFAULT_RETRIES = 2
const DEFAULT_BACKOFF_MS = 1000
export const DEFAULT_REDISPATCH_MS = 5 * 60_000

/** A step's duration in milliseconds (the schema already checked its form). */
export const durationMs = (value: number | string): number => parseDuration(value, 'duration')

/**
 * The plan a run follows: what a stored pipeline's steps mean once defaults are applied. A
 * pipeline where no step says `needs` runs its steps one after another, in order, as Conveyor CI
 * does; once any step says `needs`, the steps form a DAG and a step without `needs` starts at once.
 */
export function planOf(steps: readonly StepInput[]): StepPlan[] {
  const linear = steps.every((step) => step.needs === undefined)
  return steps.map((step, i) => ({
    id: step.id,
    name: step.name ?? step.id,
    driver: step.driver,
    needs: linear ? (i > 0 ? [steps[i - 1]!.id] : []) : (step.needs ?? []),
    retries: step.retries ?? DEFAULT_RETRIES,
    ...(step.timeout !== undefined ? { timeoutMs: durationMs(step.timeout) } : {}),
    backoffMs: step.backoff !== undefined ? durationMs(step.backoff) : DEFAULT_BACKOFF_MS,
    redispatchMs: step.redispatchAfter !== undefined ? durationMs(step.redispatchAfter) : DEFAULT_REDISPATCH_MS,
    ...(step.commands ? { commands: step.commands } : {}),
    ...(step.env ? { env: step.env } : {}),
  }))
}

/**
 * Checks what a schema cannot: unique ids, `needs` naming existing steps, no cycle, durations in
 * range. Every problem names the step by its JSON pointer (`/steps/2/needs/0`).
 */
export function checkSteps(steps: readonly StepInput[]): FieldError[] {
  const errors: FieldError[] = []
  const index = new Map<string, number>()
  steps.forEach((step, i) => {
    if (index.has(step.id))
      errors.push({
        path: `/steps/${i}/id`,
        message: `duplicate step id ${step.id} (also /steps/${index.get(step.id)}/id)`,
      })
    else index.set(step.id, i)
    for (const [field, value] of [
      ['timeout', step.timeout],
      ['backoff', step.backoff],
      ['redispatchAfter', step.redispatchAfter],
    ] as const) {
      if (value === undefined) continue
      let ms: number
      try {
        ms = durationMs(value)
      } catch {
        ms = 0
      }
      if (ms < 1 || ms > 7 * 24 * 3600 * 1000)
        errors.push({ path: `/steps/${i}/${field}`, message: `must be ${DURATION_FORMS}, between 1ms and 7d` })
    }
  })
  steps.forEach((step, i) => {
    const seen = new Set<string>()
    step.needs?.forEach((need, j) => {
      if (need === step.id)
        errors.push({ path: `/steps/${i}/needs/${j}`, message: `step ${step.id} cannot need itself` })
      else if (!index.has(need))
        errors.push({
          path: `/steps/${i}/needs/${j}`,
          message: `unknown step ${need} (steps are ${[...index.keys()].join(', ')})`,
        })
      if (seen.has(need)) errors.push({ path: `/steps/${i}/needs/${j}`, message: `${need} is listed twice` })
      seen.add(need)
    })
  })
  if (errors.length > 0) return errors
  const cycle = findCycle(steps)
  if (cycle)
    errors.push({ path: `/steps/${index.get(cycle[0]!)}/needs`, message: `steps form a cycle: ${cycle.join(' → ')}` })
  return errors
}

/** A cycle through `needs` as the list of step ids walked (first id repeated at the end), if any. */
function findCycle(steps: readonly StepInput[]): string[] | undefined {
  const needs = new Map(steps.map((step) => [step.id, step.needs ?? []]))
  const state = new Map<string, 'visiting' | 'done'>()
  const path: string[] = []
  const visit = (id: string): string[] | undefined => {
    if (state.get(id) === 'done') return undefined
    if (state.get(id) === 'visiting') return [...path.slice(path.indexOf(id)), id]
    state.set(id, 'visiting')
    path.push(id)
    for (const need of needs.get(id) ?? []) {
      const found = visit(need)
      if (found) return found
    }
    path.pop()
    state.set(id, 'done')
    return undefined
  }
  for (const step of steps) {
    const found = visit(step.id)
    if (found) return found
  }
  return undefined
}

export type StepStatus = 'pending' | 'running' | 'retrying' | 'succeeded' | 'failed' | 'cancelled'
export type RunStatus = 'running' | 'succeeded' | 'failed' | 'cancelled'

/** One step of a run: its plan plus what happened so far. */
export interface StepRun extends StepPlan {
  readonly status: StepStatus
  /** Dispatches so far (1 on the first). */
  readonly attempt: number
  readonly message?: string
  readonly data?: Readonly<Record<string, unknown>>
  readonly startedAt?: string
  readonly finishedAt?: string
  /** Executions of this step so far, across dispatches and takeovers: the `ctx.attempt` a driver sees. */
  readonly executions?: number
  /** The driver instance's claim on the current dispatch. */
  readonly claim?: WorkClaim
  /** When the current dispatch was last sent again because nobody held it. */
  readonly redispatchedAt?: string
}

/** A pipeline run, kept in the resource's actor record and shown as `status.pipeline` / `status.steps`. */
export interface PipelineRun {
  readonly pipeline: string
  readonly status: RunStatus
  readonly steps: readonly StepRun[]
  readonly startedAt: string
  readonly finishedAt?: string
  readonly message?: string
}

/** What a driver receives for one step: the work and its limits (in `step.dispatched` events). */
export interface StepDispatch {
  readonly id: string
  readonly name: string
  readonly driver: string
  readonly attempt: number
  readonly timeoutMs?: number
  readonly commands?: readonly string[]
  readonly env?: Readonly<Record<string, string>>
}

/** How a step appears in `status.steps` (commands and env stay out of API answers). */
export function stepView(step: StepRun): Record<string, unknown> {
  const { commands: _commands, env: _env, backoffMs: _backoff, ...view } = step
  return view
}
