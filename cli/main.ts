import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import { ConveyorError } from '../runtime/errors.ts'
import { packageVersion } from '../runtime/package-version.ts'
import { OUTPUT_FORMATS, setColour, type OutputFormat } from './output.ts'
import type { ServeFlags } from './commands/flags.ts'

/**
 * Exit codes: 0 success; 1 an error (a refusal, an unreachable server, a missing object, a
 * failed check); 2 a usage error (unknown command or option, a bad flag value); `logs -f`
 * exits with the run's result: 0 succeeded, 1 failed, 2 cancelled; 130 interrupted.
 */
export const EXIT = { ok: 0, error: 1, usage: 2, interrupted: 130 } as const

const positiveInteger =
  (flag: string) =>
  (value: string): number => {
    const n = Number(value)
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1)
      throw new InvalidArgumentError(`${flag} must be a positive integer`)
    return n
  }

const port =
  (flag: string) =>
  (value: string): string => {
    const n = Number(value)
    if (!/^\d+$/.test(value) || n > 65535) throw new InvalidArgumentError(`${flag} must be a TCP port (0-65535)`)
    return value
  }

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

/** The flags of the commands that run a role, as the role functions take them. */
function serveFlags(options: Record<string, unknown>): ServeFlags {
  return {
    natsUrl: options.nats as string | undefined,
    etcdEndpoints: options.etcd as string | undefined,
    httpPort: options.port as string | undefined,
    dataDir: options.dataDir as string | undefined,
    httpHost: options.host as string | undefined,
    natsPort: options.natsPort as string | undefined,
    etcdPort: options.etcdPort as string | undefined,
    ...(options.auth === false ? { auth: false } : {}),
  }
}

/** The whole command line: every command with its own flags and generated `--help`. */
export function buildProgram(run: (code: number) => void): Command {
  // Set first: subcommands copy these when they are made.
  const program = new Command('conveyor')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`conveyor: ${text.replace(/^error: /, '')}`) })
    .description('Conveyor: resource-driven, event-driven CI/CD on etcd and NATS JetStream')
    .version(packageVersion(), '-V, --version', 'the CLI version')
    .option('--api <url>', 'the gateway of client commands (env CONVEYOR_API_URL, or the context)')
    .option('--token <token>', 'bearer token of client commands (env CONVEYOR_TOKEN, or the context)')
    .option('--context <name>', 'the context of the config file to use (env CONVEYOR_CONTEXT)')
    .option('--no-color', 'no colour (also NO_COLOR; colour is only ever used on a terminal)')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Client commands read the gateway and token from flags, then CONVEYOR_API_URL / CONVEYOR_TOKEN,
then the config file's context ($XDG_CONFIG_HOME/conveyor/config.yaml), then the local instance
(http://127.0.0.1:8080 and the admin token conveyor up keeps in $CONVEYOR_DATA_DIR).
Exit codes: 0 ok, 1 error, 2 usage; logs -f: 0 succeeded, 1 failed, 2 cancelled; 130 interrupted.`,
    )
  program.hook('preAction', () => setColour(program.opts().color !== false))
  const globals = (command: Command) =>
    command.optsWithGlobals() as Record<string, unknown> & {
      api?: string
      token?: string
      context?: string
    }
  const target = (options: Record<string, unknown>) => ({
    api: options.api as string | undefined,
    token: options.token as string | undefined,
    context: options.context as string | undefined,
  })

  // Roles.
  const serverOptions = (command: Command, which: { http?: boolean; local?: boolean } = {}): Command => {
    command
      .option('--nats <url>', 'NATS server (env CONVEYOR_NATS_URL, default nats://127.0.0.1:4222)')
      .option('--etcd <urls>', 'etcd endpoints, comma separated (env CONVEYOR_ETCD_ENDPOINTS)')
      .option('--data-dir <dir>', 'data directory (env CONVEYOR_DATA_DIR, default ./.conveyor)')
    if (which.http)
      command
        .option('--port <n>', 'HTTP port (env CONVEYOR_HTTP_PORT, default 8080)', port('--port'))
        .option('--host <addr>', 'HTTP bind address (env CONVEYOR_HTTP_HOST, default 127.0.0.1)')
        .option('--no-auth', 'answer without tokens (only on a loopback address; env CONVEYOR_AUTH=off)')
    if (which.local)
      command
        .option(
          '--nats-port <n>',
          'client port of the local nats-server (default 4222; its monitor is this + 4000; 0 picks free ports)',
          port('--nats-port'),
        )
        .option(
          '--etcd-port <n>',
          'client port of the local etcd (default 2379; its peer port is this + 1; 0 picks free ports)',
          port('--etcd-port'),
        )
    return command
  }
  serverOptions(
    program.command('up').description('start etcd, NATS and every Conveyor role in one process (the embedded default)'),
    { http: true, local: true },
  ).action(async (options) => run(await (await import('./commands/up.ts')).up(serveFlags(options))))
  serverOptions(program.command('gateway').description('run the HTTP/WebSocket API against external etcd and NATS'), {
    http: true,
  }).action(async (options) => run(await (await import('./commands/roles.ts')).gateway(serveFlags(options))))
  serverOptions(program.command('worker').description('run actor workers against external etcd and NATS')).action(
    async (options) => run(await (await import('./commands/roles.ts')).worker(serveFlags(options))),
  )
  serverOptions(
    program
      .command('driver')
      .argument('<file|name>', 'a file exporting a driver (defineDriver), or a built-in driver (shell)')
      .description(
        'run a driver; with CONVEYOR_DRIVER_TOKEN (a driver token) it signs in to NATS with its own identity from the gateway at CONVEYOR_API_URL',
      ),
  ).action(async (file: string, options) =>
    run(await (await import('./commands/driver.ts')).driver(serveFlags(options), file)),
  )
  program
    .command('cluster')
    .description(
      'a 3-node NATS JetStream cluster and a 3-member etcd cluster on loopback, two gateways, workers and shell drivers',
    )
    .option('--port <n>', 'HTTP port of the first gateway (the second takes the next)', port('--port'))
    .option('--nats-port <n>', 'first NATS client port (0 picks free ports)', port('--nats-port'))
    .option('--data-dir <dir>', 'data directory')
    .option('--servers-only', 'only the servers: no gateways, workers or drivers')
    .action(async (options) =>
      run(
        await (
          await import('./commands/cluster.ts')
        ).cluster({ ...serveFlags(options), serversOnly: options.serversOnly }),
      ),
    )

  // Objects.
  program
    .command('apply')
    .description('create or update the objects of YAML or JSON manifests (ResourceDefinition, Pipeline, Resource)')
    .requiredOption(
      '-f, --filename <path>',
      'a file, a directory of .yaml/.yml/.json files, or - for stdin (repeatable)',
      collect,
    )
    .action(async (options, command: Command) =>
      run(
        await (
          await import('./commands/apply.ts')
        ).applyManifests({ ...target(globals(command)), filename: options.filename }, 'apply'),
      ),
    )
  program
    .command('delete')
    .description('delete the objects of manifests (-f), or one object: TYPE/NAME, definition NAME, pipeline NAME')
    .argument('[what]', 'TYPE/NAME, TYPE, definition or pipeline')
    .argument('[name]', 'the name, when not in TYPE/NAME')
    .option('-f, --filename <path>', 'manifests whose objects to delete (repeatable)', collect)
    .option('--ignore-not-found', 'an object already gone is not an error')
    .action(async (what: string | undefined, name: string | undefined, options, command: Command) => {
      const flags = { ...target(globals(command)), ignoreNotFound: options.ignoreNotFound === true }
      if (options.filename) {
        if (what) throw new InvalidArgumentError('give -f or an object, not both')
        return run(
          await (
            await import('./commands/apply.ts')
          ).applyManifests({ ...flags, filename: options.filename }, 'delete'),
        )
      }
      if (!what) throw new InvalidArgumentError('delete needs -f FILE or TYPE/NAME')
      run(await (await import('./commands/delete.ts')).deleteObject(flags, what, name))
    })
  program
    .command('get')
    .description('list definitions, pipelines, drivers, replays or the resources of a TYPE, or get one by NAME')
    .argument('<what>', 'definitions | pipelines | drivers | replays | TYPE | TYPE/NAME')
    .argument('[name]', 'one object')
    .addOption(
      new Option('-o, --output <format>', 'table, wide, json, yaml or name').choices(OUTPUT_FORMATS).default('table'),
    )
    .option('-l, --selector <selector>', 'label selector: a=b,c!=d,e,!f (resources)')
    .option('-w, --watch', 'after the list, print each change as it commits (resources; Ctrl-C stops)')
    .action(async (what: string, name: string | undefined, options, command: Command) =>
      run(
        await (
          await import('./commands/get.ts')
        ).get(
          {
            ...target(globals(command)),
            output: options.output as OutputFormat,
            selector: options.selector,
            watch: options.watch,
          },
          what,
          name,
        ),
      ),
    )
  program
    .command('describe')
    .description("a resource's spec, labels, state and accepted events, run steps, driver outcomes and recent history")
    .argument('<what>', 'TYPE/NAME (or TYPE NAME, definition NAME, pipeline NAME)')
    .argument('[name]')
    .action(async (what: string, name: string | undefined, _options, command: Command) =>
      run(await (await import('./commands/get.ts')).describe(target(globals(command)), what, name)),
    )
  program
    .command('logs')
    .description("a resource's current run log with step prefixes; -f follows it and exits with the run's result")
    .argument('<what>', 'TYPE/NAME (or TYPE NAME)')
    .argument('[name]')
    .option('-f, --follow', 'follow until the run ends; exit 0 succeeded, 1 failed, 2 cancelled')
    .option('--step <id>', 'only this step')
    .option('--run <runid>', 'this run instead of the current one')
    .option('--json', 'one JSON line per log line')
    .action(async (what: string, name: string | undefined, options, command: Command) =>
      run(await (await import('./commands/logs.ts')).logs({ ...target(globals(command)), ...options }, what, name)),
    )
  program
    .command('send')
    .description("send an event to a resource's actor")
    .argument('<what>', 'TYPE/NAME (or TYPE NAME)')
    .argument('<event>', 'the event type (with TYPE NAME: the name)')
    .argument('[event]')
    .option('--data <json>', 'the event payload, a JSON object')
    .option('--id <id>', 'an id that makes a resend apply once')
    .option('--json', 'print the answer as JSON')
    .action(async (what: string, second: string, third: string | undefined, options, command: Command) =>
      run(
        await (
          await import('./commands/logs.ts')
        ).send({ ...target(globals(command)), ...options }, what, second, third),
      ),
    )
  program
    .command('history')
    .description("the resource's events in order")
    .argument('<what>', 'TYPE/NAME')
    .option('--kind <kinds>', 'only these kinds, comma separated (created,transitioned,step.result,…)')
    .option('--after <seq>', 'events after this sequence', positiveInteger('--after'))
    .option('--limit <n>', 'at most this many events', positiveInteger('--limit'))
    .option('--json', 'one JSON line per event')
    .action(async (what: string, options, command: Command) =>
      run(await (await import('./commands/client.ts')).history({ ...target(globals(command)), ...options }, what)),
    )
  program
    .command('verify')
    .description('rebuild actors from their history and compare with etcd (every resource without an argument)')
    .argument('[what]', 'TYPE/NAME')
    .option('--json', 'one JSON line per resource')
    .action(async (what: string | undefined, options, command: Command) =>
      run(await (await import('./commands/client.ts')).verify({ ...target(globals(command)), ...options }, what)),
    )
  program
    .command('replay')
    .description('re-deliver history to a driver, with progress (Ctrl-C cancels it)')
    .requiredOption('--driver <name>', 'the driver to deliver to')
    .option('--type <type>', 'only this resource type')
    .option('--resource <name>', 'only this resource (with --type)')
    .option('--from-seq <seq>', 'from this events-stream sequence', positiveInteger('--from-seq'))
    .option('--since <time>', 'from this time: ISO (2026-12-01T10:00:00Z) or a duration ago (90m, 1h30m, 2d)')
    .option('--until <seq|time>', 'up to this sequence or time')
    .option('--force', 'run completed work again')
    .action(async (options, command: Command) =>
      run(await (await import('./commands/client.ts')).replay({ ...target(globals(command)), ...options })),
    )

  // Tokens and contexts.
  const token = program.command('token').description('make, list and revoke bearer tokens (admin)')
  token
    .command('create')
    .description('a token, shown once (needs an admin token; --direct writes to etcd, for the first admin token)')
    .addOption(
      new Option('--role <role>', 'its role').choices(['admin', 'operator', 'viewer', 'driver']).makeOptionMandatory(),
    )
    .option('--types <types>', 'limit it to these resource types, comma separated')
    .option('--driver <name>', 'the driver a driver token speaks for')
    .option('--expires <duration>', 'expire after this long: 30d, 12h, 90m')
    .option('--description <text>', 'what it is for')
    .option('--direct', 'write to etcd directly (--etcd or CONVEYOR_ETCD_ENDPOINTS and its credentials)')
    .option('--etcd <urls>', 'etcd endpoints for --direct')
    .option('--json', 'print it as JSON')
    .action(async (options, command: Command) =>
      run(
        await (
          await import('./commands/token.ts')
        ).token({ ...target(globals(command)), ...options, etcdEndpoints: options.etcd }, 'create', undefined),
      ),
    )
  token
    .command('list')
    .description('every token (never its secret)')
    .option('--direct', 'read etcd directly')
    .option('--etcd <urls>', 'etcd endpoints for --direct')
    .option('--json', 'one JSON line per token')
    .action(async (options, command: Command) =>
      run(
        await (
          await import('./commands/token.ts')
        ).token({ ...target(globals(command)), ...options, etcdEndpoints: options.etcd }, 'list', undefined),
      ),
    )
  token
    .command('revoke')
    .description('revoke a token by its id (every gateway refuses it within 5 s)')
    .argument('<id>')
    .option('--direct', 'write to etcd directly')
    .option('--etcd <urls>', 'etcd endpoints for --direct')
    .action(async (id: string, options, command: Command) =>
      run(
        await (
          await import('./commands/token.ts')
        ).token({ ...target(globals(command)), ...options, etcdEndpoints: options.etcd }, 'revoke', id),
      ),
    )
  const config = program
    .command('config')
    .description('contexts of the config file (servers and tokens), as kubeconfig')
  config
    .command('get-contexts')
    .description('every context; * marks the current one')
    .action(async () => run(await (await import('./commands/config.ts')).getContexts()))
  config
    .command('current-context')
    .description('the context client commands use now, its server and where the token comes from')
    .action(async (_options, command: Command) =>
      run(await (await import('./commands/config.ts')).currentContext(target(globals(command)))),
    )
  config
    .command('set-context')
    .description('add or change a context; --token (the global flag) is kept in the file, mode 0600')
    .argument('<name>')
    .option('--server <url>', 'the gateway URL')
    .option('--token-file <path>', 'a file holding the token (e.g. .conveyor/admin.token)')
    .option('--use', 'make it the current context')
    .action(async (name: string, options, command: Command) =>
      run(
        await (
          await import('./commands/config.ts')
        ).setContext(name, {
          ...(options.server ? { server: options.server } : {}),
          ...(globals(command).token ? { token: globals(command).token } : {}),
          ...(options.tokenFile ? { tokenFile: options.tokenFile } : {}),
          use: options.use === true,
        }),
      ),
    )
  config
    .command('use-context')
    .argument('<name>')
    .description('make a context the current one')
    .action(async (name: string) => run(await (await import('./commands/config.ts')).useContext(name)))
  config
    .command('delete-context')
    .argument('<name>')
    .description('remove a context')
    .action(async (name: string) => run(await (await import('./commands/config.ts')).deleteContext(name)))

  program
    .command('version')
    .description('the CLI version (and the runtime)')
    .action(() => {
      process.stdout.write(`conveyor ${packageVersion()} (node ${process.version})\n`)
      run(0)
    })
  program
    .command('completion')
    .description('a shell completion script: source <(conveyor completion bash)')
    .argument('<shell>', 'bash or zsh')
    .action(async (shell: string) => {
      process.stdout.write((await import('./commands/completion.ts')).completion(program, shell))
      run(0)
    })
  return program
}

/** Runs one CLI invocation and returns its exit code; errors become one clear line. */
export async function main(argv: readonly string[]): Promise<number> {
  let result: number = EXIT.ok
  const program = buildProgram((code) => (result = code))
  try {
    if (argv.length === 0) {
      process.stdout.write(program.helpInformation())
      return EXIT.usage
    }
    await program.parseAsync([...argv], { from: 'user' })
    return result
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end here too, successfully.
      if (
        error.code === 'commander.helpDisplayed' ||
        error.code === 'commander.version' ||
        error.code === 'commander.help'
      )
        return EXIT.ok
      if (error.code === 'commander.invalidArgument' && error.message) return EXIT.usage
      return EXIT.usage
    }
    if (error instanceof InvalidArgumentError) {
      process.stderr.write(`conveyor: ${error.message}\n`)
      return EXIT.usage
    }
    const { explain } = await import('./session.ts')
    const message =
      explain(error) ??
      (error instanceof ConveyorError || error instanceof TypeError
        ? error.message
        : error instanceof Error
          ? (error.stack ?? error.message)
          : String(error))
    process.stderr.write(`conveyor: ${message}\n`)
    return EXIT.error
  }
}
