import type { DriverRegistry } from '../../runtime/driver-registry.ts'
import type { Router } from '../router.ts'

/** `GET /drivers`: every driver ever seen, with its live instances, from the registry. */
export function registerDriverRoutes(router: Router, registry: DriverRegistry): void {
  router.add('GET', '/drivers', () => ({ status: 200, body: { items: registry.list() } }))
}
