import type { Connections } from '../../runtime/connections.ts'
import type { Router } from '../router.ts'
import { keys } from '../../runtime/keys.ts'

/**
 * `/health`: the process is up. `/ready`: etcd and NATS answer and take writes, so requests can
 * succeed; to a caller with a token it also shows etcd's space (size, quota, alarms) and how full
 * each stream is.
 */
export function registerHealthRoutes(router: Router, connections: Connections): void {
  router
    .add('GET', '/health', () => ({ status: 200, body: { status: 'ok' } }))
    .add('GET', '/ready', async (request) => {
      const etcd = await connections.etcd
        .get(keys.ping())
        .options({ deadline: Date.now() + 1000 })
        .then(
          () => 'ok',
          () => 'unavailable',
        )
      const nats = connections.natsConnected() ? 'ok' : 'unavailable'
      const space = connections.etcdSpace.status()
      const etcdSpace = space ?? { quotaBytes: connections.etcdSpace.quotaBytes, alarms: [] as readonly string[] }
      const streams = connections.streamSpace.usage()
      const problems = [
        ...(etcdSpace.alarms.includes('NOSPACE')
          ? ['etcd is out of space (NOSPACE alarm) and refuses writes until space is reclaimed']
          : []),
        ...Object.entries(streams)
          .filter(([, usage]) => usage.full)
          .map(([name]) => `stream ${name} is full and refuses new messages until consumers catch up`),
      ]
      const ready = etcd === 'ok' && nats === 'ok' && problems.length === 0
      // Without a token, only whether it is ready: the figures are for those who may read.
      if (!request.principal) return { status: ready ? 200 : 503, body: { status: ready ? 'ready' : 'not ready' } }
      return {
        status: ready ? 200 : 503,
        body: {
          status: ready ? 'ready' : 'not ready',
          etcd,
          nats,
          ...(problems.length > 0 ? { problems } : {}),
          etcdSpace,
          streams,
        },
      }
    })
}
