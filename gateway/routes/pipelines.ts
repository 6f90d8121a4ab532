import { PipelineInput } from '../../definitions/pipeline.ts'
import { compileInput } from '../../definitions/validate.ts'
import type { PipelineStore } from '../../runtime/pipeline-store.ts'
import { parseJson } from '../http.ts'
import type { ApiReply } from '../http.ts'
import type { Router } from '../router.ts'
import type { Pipeline } from '../../definitions/pipeline.ts'
import { expectedRevision, nameParam } from './common.ts'

const parsePipeline = compileInput(PipelineInput, 'pipeline')

/** Conveyor's pipeline routes: `{name, resource, description?, steps: [{id, name, driver, needs?, retries?, timeout?}]}`. */
export function registerPipelineRoutes(
  router: Router,
  pipelines: PipelineStore,
  driverIsKnown: (driver: string) => boolean,
): void {
  /** A pipeline naming a driver never seen is accepted, with a warning in the body and a `Warning` header. */
  const saved = (status: number, pipeline: Pipeline): ApiReply => {
    const unknown = [...new Set(pipeline.steps.map((s) => s.driver).filter((d) => !driverIsKnown(d)))]
    if (unknown.length === 0) return { status, body: pipeline }
    const warnings = unknown.map(
      (driver) => `driver "${driver}" has never been seen: its steps will wait until an instance of it runs`,
    )
    return {
      status,
      body: { ...pipeline, warnings },
      headers: { Warning: warnings.map((w) => `299 conveyor ${JSON.stringify(w)}`).join(', ') },
    }
  }
  router
    .add('POST', '/pipelines', async (request) =>
      saved(201, await pipelines.create(parsePipeline(parseJson(request.body)))),
    )
    .add('GET', '/pipelines', async () => ({ status: 200, body: { items: await pipelines.list() } }))
    .add('GET', '/pipelines/:name', async (request) => ({
      status: 200,
      body: await pipelines.get(nameParam(request, 'name')),
    }))
    .add('PUT', '/pipelines/:name', async (request) => {
      const name = nameParam(request, 'name')
      const body = parseJson(request.body)
      return saved(200, await pipelines.update(name, parsePipeline(body), expectedRevision(request, body)))
    })
    .add('DELETE', '/pipelines/:name', async (request) => ({
      status: 200,
      body: await pipelines.delete(nameParam(request, 'name'), expectedRevision(request)),
    }))
}
