import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFile } from 'node:fs/promises'
import { startLocalServers, type LocalServers } from '../runtime/servers/local-cluster.ts'
import { connectServers } from '../runtime/connections.ts'
import { parseDuration, parseSize } from '../definitions/durations.ts'
import { etcdLimitsFromEnv, maxVersionsFromEnv, retentionFromEnv } from '../runtime/config.ts'
import { ConveyorProcess } from './processes.ts'

const DAY_NS = 86_400 * 1e9
let servers: LocalServers

beforeAll(async () => {
  servers = await startLocalServers({ etcdCompactionRetentionMs: 2 * 3600 * 1000 })
})
afterAll(async () => {
  await servers?.stop()
})

describe('retention', () => {
  it('keeps a week by default; applies only limits it is given, so processes without settings do not undo them', async () => {
    const first = await connectServers(servers, { retention: {} })
    const info = async (name: string) => (await first.jsm.streams.info(name)).config
    expect((await info('CONVEYOR_EVENTS')).max_age).toBe(7 * DAY_NS)
    expect((await info('CONVEYOR_LOGS')).max_age).toBe(7 * DAY_NS)
    // Work streams are bounded and refuse when full; the log stream forgets its oldest lines.
    expect(await info('CONVEYOR_EVENTS')).toMatchObject({ discard: 'new', max_bytes: 4 * 1024 ** 3 })
    expect(await info('CONVEYOR_INBOX')).toMatchObject({ discard: 'new', max_bytes: 1024 ** 3 })
    expect(await info('CONVEYOR_LOGS')).toMatchObject({ discard: 'old', max_bytes: -1 })
    const tuned = await connectServers(servers, {
      retention: { eventsMaxAgeMs: 3 * 86_400_000, logsMaxAgeMs: 86_400_000, logsMaxBytes: 1024 ** 3 },
    })
    await tuned.close()
    const plain = await connectServers(servers, { retention: {} })
    await plain.close()
    expect((await info('CONVEYOR_EVENTS')).max_age).toBe(3 * DAY_NS)
    expect((await info('CONVEYOR_INBOX')).max_age).toBe(3 * DAY_NS)
    expect(await info('CONVEYOR_LOGS')).toMatchObject({ max_age: DAY_NS, max_bytes: 1024 ** 3 })
    await first.close()
  })

  it('reads its settings from the environment and names a bad value', () => {
    expect(
      retentionFromEnv({
        CONVEYOR_EVENTS_RETENTION: '14d',
        CONVEYOR_LOGS_RETENTION: '72h',
        CONVEYOR_EVENTS_MAX_BYTES: '10GiB',
        CONVEYOR_INBOX_MAX_BYTES: '2GiB',
      }),
    ).toEqual({
      eventsMaxAgeMs: 14 * 86_400_000,
      logsMaxAgeMs: 72 * 3_600_000,
      eventsMaxBytes: 10 * 1024 ** 3,
      inboxMaxBytes: 2 * 1024 ** 3,
    })
    expect(etcdLimitsFromEnv({})).toEqual({ quotaBytes: 2 * 1024 ** 3, maxRequestBytes: 1.5 * 1024 ** 2 })
    expect(etcdLimitsFromEnv({ CONVEYOR_ETCD_QUOTA: '8GiB', CONVEYOR_ETCD_MAX_REQUEST_BYTES: '4MiB' })).toEqual({
      quotaBytes: 8 * 1024 ** 3,
      maxRequestBytes: 4 * 1024 ** 2,
    })
    expect(maxVersionsFromEnv({})).toBe(10)
    expect(maxVersionsFromEnv({ CONVEYOR_MAX_VERSIONS: '3' })).toBe(3)
    expect(() => maxVersionsFromEnv({ CONVEYOR_MAX_VERSIONS: '0' })).toThrow(/CONVEYOR_MAX_VERSIONS must be an integer/)
    expect(retentionFromEnv({})).toEqual({})
    expect(parseDuration('90m', 'x')).toBe(5_400_000)
    expect(parseDuration('1h30m', 'x')).toBe(5_400_000)
    expect(parseDuration('2d', 'x')).toBe(172_800_000)
    expect(parseSize('500MB', 'x')).toBe(500e6)
    expect(() => parseDuration('a week', 'CONVEYOR_EVENTS_RETENTION')).toThrow(
      /CONVEYOR_EVENTS_RETENTION must be a duration such as 30s, 5m, 1h30m or 500ms, or a positive number of milliseconds/,
    )
    expect(() => parseSize('lots', 'CONVEYOR_LOGS_MAX_BYTES')).toThrow(/CONVEYOR_LOGS_MAX_BYTES must be a size/)
  })

  it('starts the local etcd with the compaction retention asked for, and a process refuses a bad setting with one line', async () => {
    const cmdline = (await readFile(`/proc/${servers.etcd.child.pid}/cmdline`, 'utf8')).split('\0')
    expect(cmdline).toContain('--auto-compaction-retention=2h')
    expect(cmdline).toContain(`--quota-backend-bytes=${2 * 1024 ** 3}`)
    expect(cmdline).toContain(`--max-request-bytes=${1.5 * 1024 ** 2}`)
    const child = new ConveyorProcess(['gateway', '--port', '0'], {
      ...servers.env,
      CONVEYOR_EVENTS_RETENTION: 'forever',
    })
    const { code } = await child.exited
    expect(code).toBe(1)
    expect(child.output.trim()).toBe(
      'conveyor: CONVEYOR_EVENTS_RETENTION must be a duration such as 30s, 5m, 1h30m or 500ms, or a positive number of milliseconds, got "forever"',
    )
  })
})
