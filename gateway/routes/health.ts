import type { Connections } from '../../runtime/connections.ts'
import type { Router } from '../router.ts'
import { keys } from '../../runtime/keys.ts'

/** `/health`: the process is up. `/ready`: etcd and NATS answer, so requests can succeed. */
export function registerHealthRoutes(router: Router, connections: Connections): void {
  router
    .add('GET', '/health', () => ({ status: 200, body: { status: 'ok' } }))
    .add('GET', '/ready', async () => {
      const etcd = await connections.etcd
        .get(keys.ping())
        .options({ deadline: Date.now() + 1000 })
        .then(
          () => 'ok',
          () => 'unavailable',
        )
      const nats = connections.natsConnected() ? 'ok' : 'unavailable'
      const ready = etcd === 'ok' && nats === 'ok'
      return { status: ready ? 200 : 503, body: { status: ready ? 'ready' : 'not ready', etcd, nats } }
    })
}
