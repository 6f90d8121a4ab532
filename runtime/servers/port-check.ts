import { createServer } from 'node:net'
import { readFile, readdir, readlink } from 'node:fs/promises'
import { ConveyorError } from '../errors.ts'

/** A port a command needs, and what for (`NATS client`, `etcd peer`, `HTTP API`). */
export interface NeededPort {
  readonly port: number
  readonly what: string
  /** The address it binds. @default '127.0.0.1' */
  readonly host?: string
  /** The flag that moves it, for the error. */
  readonly flag?: string
}

/** True when nothing listens on `host:port` (a listener on it succeeds). */
async function isFree(port: number, host: string): Promise<boolean> {
  return await new Promise((resolve) => {
    const server = createServer()
    server.unref()
    server.once('error', () => resolve(false))
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)))
  })
}

/** The socket inodes listening on `port` (IPv4 and IPv6), from /proc/net (Linux). */
async function listeningInodes(port: number): Promise<Set<string>> {
  const inodes = new Set<string>()
  const hex = port.toString(16).toUpperCase().padStart(4, '0')
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '')
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/)
      // local_address is ADDR:PORT in hex; state 0A is LISTEN.
      if (fields[1]?.endsWith(`:${hex}`) && fields[3] === '0A' && fields[9]) inodes.add(fields[9])
    }
  }
  return inodes
}

/** `pid 1234 (nats-server -p 4222 …)` for the process listening on `port`, when this user may see it. */
export async function describeHolder(port: number): Promise<string | undefined> {
  const inodes = await listeningInodes(port)
  if (inodes.size === 0) return undefined
  const pids = await readdir('/proc').catch(() => [] as string[])
  for (const pid of pids) {
    if (!/^\d+$/.test(pid)) continue
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1]
      if (inode === undefined || !inodes.has(inode)) continue
      const command = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''))
        .split('\0')
        .filter(Boolean)
        .join(' ')
      return `pid ${pid} (${command.length > 120 ? `${command.slice(0, 117)}...` : command || 'unknown'})`
    }
  }
  return undefined
}

/**
 * Refuses, with one line naming the port, its use and what holds it, when any needed port is
 * taken: a command that starts its own servers must never find another instance's servers on
 * its ports and take them for its own. Port 0 (pick a free one) is never taken.
 */
export async function ensurePortsFree(ports: readonly NeededPort[]): Promise<void> {
  for (const { port, what, host = '127.0.0.1', flag } of ports) {
    if (port === 0 || (await isFree(port, host))) continue
    const holder = (await describeHolder(port)) ?? 'another process'
    throw new ConveyorError(
      'port-taken',
      `port ${port} (${what}) is already in use by ${holder}: stop it${flag ? `, or pick another port with ${flag}` : ''}`,
    )
  }
}
