#!/usr/bin/env node
// The `conveyor` command: loads the TypeScript sources through tsx, then runs the CLI.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('./main.ts')
// Exit explicitly: a failed start may leave a connection that would keep the process alive.
process.exit(await main(process.argv.slice(2)))
