import { PipelineInput } from '../../definitions/pipeline.ts'
import { compileInput } from '../../definitions/validate.ts'
import type { PipelineStore } from '../../runtime/pipeline-store.ts'
import { parseJson } from '../http.ts'
import type { Router } from '../router.ts'
import { expectedRevision, nameParam } from './common.ts'

const parsePipeline = compileInput(PipelineInput, 'pipeline')

/** Conveyor's pipeline routes: `{name, resource, description?, steps: [{id, name, driver, needs?, retries?, timeout?}]}`. */
export function registerPipelineRoutes(router: Router, pipelines: PipelineStore): void {
  router
    .add('POST', '/pipelines', async (request) => ({ status: 201, body: await pipelines.create(parsePipeline(parseJson(request.body))) }))
    .add('GET', '/pipelines', async () => ({ status: 200, body: { items: await pipelines.list() } }))
    .add('GET', '/pipelines/:name', async (request) => ({ status: 200, body: await pipelines.get(nameParam(request, 'name')) }))
    .add('PUT', '/pipelines/:name', async (request) => {
      const name = nameParam(request, 'name')
      const body = parseJson(request.body)
      return { status: 200, body: await pipelines.update(name, parsePipeline(body), expectedRevision(request, body)) }
    })
    .add('DELETE', '/pipelines/:name', async (request) => ({ status: 200, body: await pipelines.delete(nameParam(request, 'name'), expectedRevision(request)) }))
}
