import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startStack, type Stack } from './harness.ts'
import { routePolicies } from '../gateway/access-policy.ts'

let stack: Stack
beforeAll(async () => {
  stack = await startStack()
})
afterAll(async () => stack?.close())

const NEEDS: Record<string, string> = {
  public: 'nothing',
  read: 'read',
  write: 'write',
  admin: 'admin',
  driver: 'driver',
}

it('every route has an access policy, and docs/security.md states each as the code decides it', async () => {
  const policies = routePolicies(async () => undefined)
  const unmapped = stack.gateway.routes.filter((route) => !(route in policies))
  expect(unmapped, 'routes without a policy (they would need an admin)').toEqual([])
  const doc = await readFile(fileURLToPath(new URL('../docs/security.md', import.meta.url)), 'utf8')
  const table = new Map(
    [...doc.matchAll(/^\| `((?:GET|POST|PUT|DELETE) [^`]+)` \| (\w+)/gm)].map((m) => [m[1]!, m[2]!] as const),
  )
  for (const [route, policy] of Object.entries(policies))
    expect(table.get(route), `docs/security.md on ${route}`).toBe(NEEDS[policy.access])
})
