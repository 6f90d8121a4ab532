import { PipelineInput } from '../../definitions/pipeline.ts'
import { compileInput } from '../../definitions/validate.ts'
import type { PipelineStore } from '../../runtime/pipeline-store.ts'
import { parseJson } from '../http.ts'
import type { ApiReply } from '../http.ts'
import type { Router } from '../router.ts'
import type { Pipeline } from '../../definitions/pipeline.ts'
import { conditionally, nameParam, objectReply, withPathDefaults, withWarnings, writeCondition } from './common.ts'

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
    return withWarnings(
      objectReply(status, pipeline),
      unknown.map(
        (driver) => `driver "${driver}" has never been seen: its steps will wait until an instance of it runs`,
      ),
    )
  }
  router
    .add('POST', '/pipelines', async (request) =>
      saved(201, await pipelines.create(parsePipeline(parseJson(request.body)))),
    )
    .add('GET', '/pipelines', async () => ({ status: 200, body: { items: await pipelines.list() } }))
    .add('GET', '/pipelines/:name', async (request) =>
      objectReply(200, await pipelines.get(nameParam(request, 'name'))),
    )
    .add('PUT', '/pipelines/:name', async (request) => {
      const name = nameParam(request, 'name')
      const body = withPathDefaults(parseJson(request.body), { name })
      const input = parsePipeline(body)
      return saved(
        200,
        await conditionally(writeCondition(request, body), (revision) => pipelines.update(name, input, revision)),
      )
    })
    .add('DELETE', '/pipelines/:name', async (request) => {
      const name = nameParam(request, 'name')
      return objectReply(
        200,
        await conditionally(writeCondition(request), (revision) => pipelines.delete(name, revision)),
      )
    })
}
