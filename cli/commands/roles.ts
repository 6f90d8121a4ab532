import { join } from 'node:path'
import { resolveConfig, workerEnvironment } from '../../runtime/config.ts'
import { connectServers } from '../../runtime/connections.ts'
import { startGateway } from '../../gateway/server.ts'
import { loadUws } from '../../gateway/uws.ts'
import { startWorker } from '../../actors/worker/worker.ts'
import { untilSignal } from '../signals.ts'
import type { ServeFlags } from './flags.ts'

/** `conveyor gateway`: the HTTP/WebSocket API against external servers. */
export async function gateway(flags: ServeFlags): Promise<number> {
  const config = resolveConfig(flags)
  await loadUws()
  const connections = await connectServers(config, { name: 'conveyor gateway' })
  const running = await startGateway({
    connections,
    port: config.httpPort,
    host: config.httpHost,
    allowedOrigins: config.allowedOrigins,
    auth: config.auth,
    dataDir: join(config.dataDir, 'gateway'),
  }).catch(async (error: unknown) => {
    await connections.close()
    throw error
  })
  process.stdout.write(`Conveyor gateway listening on ${running.url}\n`)
  return await untilSignal(async () => {
    await running.close()
    await connections.close()
  })
}

/** `conveyor worker`: hosts resource actors (and relays the outbox) against external servers. */
export async function worker(flags: ServeFlags): Promise<number> {
  const config = resolveConfig(flags)
  const connections = await connectServers(config, { name: 'conveyor worker' })
  const running = await startWorker({
    connections,
    ...workerEnvironment(),
  })
  process.stdout.write(`Conveyor worker ${running.id} running\n`)
  return await untilSignal(async () => {
    await running.close()
    await connections.close()
  })
}
