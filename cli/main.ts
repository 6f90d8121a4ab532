import { parseArgs } from 'node:util'
import { ConveyorError } from '../runtime/errors.ts'

const USAGE = `usage: conveyor <command> [options]

  up                 start etcd, NATS and every Conveyor role in one process
  gateway            run the HTTP/WebSocket API against external etcd and NATS
  worker             run background workers against external etcd and NATS
  driver FILE|NAME   run the driver exported by FILE, or a built-in one (shell); with CONVEYOR_DRIVER_TOKEN
                     (a driver token) it signs in to NATS with its own identity from the gateway at
                     CONVEYOR_API_URL instead of the control plane's credentials
  cluster            a 3-node NATS JetStream cluster and a 3-member etcd cluster on loopback, then two
                     gateways (--port and the next), two workers and two shell drivers [--servers-only]

client commands (talk to the API at --api or CONVEYOR_API_URL, default http://127.0.0.1:8080):
  history TYPE/NAME  the resource's events in order [--kind k1,k2] [--after SEQ] [--limit N] [--json]
  verify [TYPE/NAME] rebuild actors from their history and compare with etcd (all without an argument)
  replay             re-deliver history to a driver: --driver NAME [--type T] [--resource N]
                     [--from-seq S | --since TIME] [--until SEQ|TIME] [--force]; prints progress

  token create --role admin|operator|viewer|driver [--types T1,T2] [--driver NAME] [--expires 30d]
                     [--description TEXT]: a token, shown once (needs an admin token; --direct writes to
                     etcd instead, for the first admin token of a control plane)
  token list | token revoke ID

options:
  --no-auth          up/gateway: answer without tokens (only on a loopback address; env CONVEYOR_AUTH=off)
  --nats URL         NATS server (env CONVEYOR_NATS_URL, default nats://127.0.0.1:4222)
  --etcd URLS        etcd endpoints, comma separated (env CONVEYOR_ETCD_ENDPOINTS)
  --port N           HTTP port (env CONVEYOR_HTTP_PORT, default 8080)
  --host ADDR        HTTP bind address (env CONVEYOR_HTTP_HOST, default 127.0.0.1)
  --data-dir DIR     data directory (env CONVEYOR_DATA_DIR, default ./.conveyor)
  --nats-port N      up: client port of the local nats-server (default 4222; 0 picks a free one)
  --etcd-port N      up: client port of the local etcd (default 2379; 0 picks a free one)
`

/** Runs one CLI invocation and returns its exit code; errors become one clear line. */
export async function main(argv: readonly string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        nats: { type: 'string' },
        etcd: { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
        'data-dir': { type: 'string' },
        'nats-port': { type: 'string' },
        'etcd-port': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        api: { type: 'string' },
        json: { type: 'boolean' },
        kind: { type: 'string' },
        after: { type: 'string' },
        limit: { type: 'string' },
        driver: { type: 'string' },
        type: { type: 'string' },
        resource: { type: 'string' },
        'from-seq': { type: 'string' },
        since: { type: 'string' },
        until: { type: 'string' },
        force: { type: 'boolean' },
        'servers-only': { type: 'boolean' },
        'no-auth': { type: 'boolean' },
        role: { type: 'string' },
        types: { type: 'string' },
        expires: { type: 'string' },
        description: { type: 'string' },
        direct: { type: 'boolean' },
      },
    })
  } catch (error) {
    process.stderr.write(`conveyor: ${error instanceof Error ? error.message : String(error)}\n${USAGE}`)
    return 2
  }
  const { values, positionals } = parsed
  const [command, ...rest] = positionals
  if (values.help || !command) {
    process.stdout.write(USAGE)
    return command || values.help ? 0 : 2
  }
  const flags = {
    natsUrl: values.nats,
    etcdEndpoints: values.etcd,
    httpPort: values.port,
    dataDir: values['data-dir'],
    httpHost: values.host,
    natsPort: values['nats-port'],
    etcdPort: values['etcd-port'],
    ...(values['no-auth'] ? { auth: false } : {}),
  }
  try {
    switch (command) {
      // Each command loads only its own modules: a driver process loads nothing of the worker or the stores.
      case 'up':
        return await (await import('./commands/up.ts')).up(flags)
      case 'gateway':
        return await (await import('./commands/roles.ts')).gateway(flags)
      case 'worker':
        return await (await import('./commands/roles.ts')).worker(flags)
      case 'driver':
        return await (await import('./commands/driver.ts')).driver(flags, rest[0])
      case 'cluster':
        return await (await import('./commands/cluster.ts')).cluster({ ...flags, serversOnly: values['servers-only'] })
      case 'history':
        return await (
          await import('./commands/client.ts')
        ).history(
          { api: values.api, json: values.json, kind: values.kind, after: values.after, limit: values.limit },
          rest[0],
        )
      case 'verify':
        return await (await import('./commands/client.ts')).verify({ api: values.api, json: values.json }, rest[0])
      case 'replay':
        return await (
          await import('./commands/client.ts')
        ).replay({
          api: values.api,
          json: values.json,
          driver: values.driver,
          type: values.type,
          resource: values.resource,
          fromSeq: values['from-seq'],
          since: values.since,
          until: values.until,
          force: values.force,
        })
      case 'token':
        return await (
          await import('./commands/token.ts')
        ).token(
          {
            api: values.api,
            json: values.json,
            role: values.role,
            types: values.types,
            driver: values.driver,
            expires: values.expires,
            description: values.description,
            direct: values.direct,
            etcdEndpoints: values.etcd,
          },
          rest[0],
          rest[1],
        )
      default:
        process.stderr.write(`conveyor: unknown command ${JSON.stringify(command)}\n${USAGE}`)
        return 2
    }
  } catch (error) {
    const message =
      error instanceof ConveyorError || error instanceof TypeError
        ? error.message
        : error instanceof Error
          ? (error.stack ?? error.message)
          : String(error)
    process.stderr.write(`conveyor: ${message}\n`)
    return 1
  }
}
