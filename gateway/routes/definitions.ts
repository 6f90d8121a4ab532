import { DefinitionInput } from '../../definitions/api-types.ts'
import { compileInput } from '../../definitions/validate.ts'
import type { DefinitionStore } from '../../runtime/definition-store.ts'
import { parseJson } from '../http.ts'
import type { Router } from '../router.ts'
import { expectedRevision, nameParam } from './common.ts'

const parseDefinition = compileInput(DefinitionInput, 'resource definition')

export function registerDefinitionRoutes(router: Router, definitions: DefinitionStore): void {
  router
    .add('POST', '/resource-definitions', async (request) => ({
      status: 201,
      body: await definitions.create(parseDefinition(parseJson(request.body))),
    }))
    .add('POST', '/resource-definitions/apply', async (request) => {
      const { definition, created } = await definitions.apply(parseDefinition(parseJson(request.body)))
      return { status: created ? 201 : 200, body: definition }
    })
    .add('GET', '/resource-definitions', async () => ({ status: 200, body: { items: await definitions.list() } }))
    .add('GET', '/resource-definitions/:name', async (request) => ({
      status: 200,
      body: await definitions.get(nameParam(request, 'name')),
    }))
    .add('PUT', '/resource-definitions/:name', async (request) => {
      const name = nameParam(request, 'name')
      const body = parseJson(request.body)
      const revision = expectedRevision(request, body)
      return { status: 200, body: await definitions.update(name, parseDefinition(body), revision) }
    })
    .add('DELETE', '/resource-definitions/:name', async (request) => ({
      status: 200,
      body: await definitions.delete(nameParam(request, 'name'), expectedRevision(request)),
    }))
}
