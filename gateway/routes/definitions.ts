import { DefinitionInput } from '../../definitions/api-types.ts'
import { compileInput } from '../../definitions/validate.ts'
import type { DefinitionStore } from '../../runtime/definition-store.ts'
import { parseJson } from '../http.ts'
import type { Router } from '../router.ts'
import { conditionally, nameParam, objectReply, withPathDefaults, writeCondition } from './common.ts'

const parseDefinition = compileInput(DefinitionInput, 'resource definition')

export function registerDefinitionRoutes(router: Router, definitions: DefinitionStore): void {
  router
    .add('POST', '/resource-definitions', async (request) =>
      objectReply(201, await definitions.create(parseDefinition(parseJson(request.body)))),
    )
    .add('POST', '/resource-definitions/apply', async (request) => {
      const { definition, created } = await definitions.apply(parseDefinition(parseJson(request.body)))
      return objectReply(created ? 201 : 200, definition)
    })
    .add('GET', '/resource-definitions', async () => ({ status: 200, body: { items: await definitions.list() } }))
    .add('GET', '/resource-definitions/:name', async (request) =>
      objectReply(200, await definitions.get(nameParam(request, 'name'))),
    )
    .add('PUT', '/resource-definitions/:name', async (request) => {
      const name = nameParam(request, 'name')
      const body = withPathDefaults(parseJson(request.body), { name })
      const input = parseDefinition(body)
      const updated = await conditionally(writeCondition(request, body), (revision) =>
        definitions.update(name, input, revision),
      )
      return objectReply(200, updated)
    })
    .add('DELETE', '/resource-definitions/:name', async (request) => {
      const name = nameParam(request, 'name')
      return objectReply(
        200,
        await conditionally(writeCondition(request), (revision) => definitions.delete(name, revision)),
      )
    })
}
