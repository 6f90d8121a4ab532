import { mkdir } from 'node:fs/promises'
import { SupervisedChild, httpOk } from './child.ts'
import { freePort } from './ports.ts'

export interface NatsServerOptions {
  /** Client port; `0` picks a free one. @default 4222 */
  readonly port?: number
  /** Monitoring port used for the readiness probe; `0` picks a free one. @default 8222 */
  readonly monitorPort?: number
  /** JetStream store directory. */
  readonly dataDir: string
}

export interface RunningNats {
  readonly url: string
  readonly port: number
  readonly child: SupervisedChild
  stop(): Promise<void>
}

/** Starts `nats-server -js` bound to 127.0.0.1 and waits until JetStream answers. */
export async function startNatsServer(options: NatsServerOptions): Promise<RunningNats> {
  const port = options.port === 0 ? await freePort() : (options.port ?? 4222)
  const monitorPort = options.monitorPort === 0 ? await freePort() : (options.monitorPort ?? 8222)
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 })
  const child = await SupervisedChild.start({
    name: 'nats-server',
    command: 'nats-server',
    args: ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitorPort), '-js', '-sd', options.dataDir],
    debianPackage: 'nats-server',
    ready: () => httpOk(`http://127.0.0.1:${monitorPort}/healthz?js-enabled-only=true`),
    readyTimeoutMs: 15_000,
  })
  return { url: `nats://127.0.0.1:${port}`, port, child, stop: () => child.stop() }
}
