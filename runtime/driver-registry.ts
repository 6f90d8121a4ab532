import { hostname } from 'node:os'
import { Kvm, type KV } from '@nats-io/kv'
import type { NatsConnections } from './nats-connection.ts'
import { buckets } from './keys.ts'
import type { Logger } from './logger.ts'

/** One running driver instance, as it announces itself. */
export interface DriverInstance {
  readonly name: string
  readonly resources: readonly string[]
  readonly instance: string
  readonly version: string
  readonly host: string
  readonly pid: number
  readonly started: string
  readonly concurrency: number
}

/** A driver ever seen, with its live instances. */
export interface RegisteredDriver {
  readonly name: string
  readonly resources: readonly string[]
  readonly lastSeen: string
  readonly instances: readonly DriverInstance[]
}

/** An instance that has not renewed its entry for this long is gone. */
export const INSTANCE_TTL_MS = 15_000
const RENEW_MS = 5000

async function instancesBucket(nats: NatsConnections): Promise<KV> {
  return await new Kvm(nats.nats).create(buckets.driverInstances, {
    ttl: INSTANCE_TTL_MS,
    history: 1,
    replicas: nats.streamReplicas,
  })
}

async function driversBucket(nats: NatsConnections): Promise<KV> {
  return await new Kvm(nats.nats).create(buckets.drivers, { history: 1, replicas: nats.streamReplicas })
}

const instanceKey = (driver: string, instance: string): string => `${driver}.${instance}`

/** Announces a driver instance until closed: an entry renewed every few seconds (it expires if the process dies), and the driver's name kept for good. */
export async function announceDriver(
  nats: NatsConnections,
  info: Omit<DriverInstance, 'host' | 'pid' | 'started'>,
  logger: Logger,
): Promise<{ close(): Promise<void> }> {
  const instances = await instancesBucket(nats)
  const drivers = await driversBucket(nats)
  const entry: DriverInstance = { ...info, host: hostname(), pid: process.pid, started: new Date().toISOString() }
  const key = instanceKey(info.name, info.instance)
  const put = (): Promise<unknown> => instances.put(key, JSON.stringify(entry))
  await put()
  await drivers.put(info.name, JSON.stringify({ name: info.name, resources: info.resources, lastSeen: entry.started }))
  const timer = setInterval(
    () =>
      void put().catch((error: unknown) =>
        logger.warn('renewing the driver registration failed', { error: String(error) }),
      ),
    RENEW_MS,
  )
  timer.unref()
  return {
    close: async () => {
      clearInterval(timer)
      await instances.delete(key).catch(() => {})
    },
  }
}

/**
 * A live view of the registry: which drivers have instances, and which serve a type. nats-server
 * 2.9 removes expired entries without telling watchers, so liveness is judged by each entry's age.
 */
export class DriverRegistry {
  readonly #instances = new Map<string, { info: DriverInstance; seenAt: number }>()
  readonly #known = new Map<string, { name: string; resources: readonly string[]; lastSeen: string }>()
  readonly #stops: (() => void)[] = []
  readonly #now: () => number

  private constructor(now: () => number) {
    this.#now = now
  }

  static async open(nats: NatsConnections, logger: Logger, now: () => number = Date.now): Promise<DriverRegistry> {
    const registry = new DriverRegistry(now)
    const [instances, drivers] = await Promise.all([instancesBucket(nats), driversBucket(nats)])
    await Promise.all([
      registry.#follow(instances, logger, (key, value, time) => {
        if (value === undefined) registry.#instances.delete(key)
        else registry.#instances.set(key, { info: JSON.parse(value) as DriverInstance, seenAt: time })
      }),
      registry.#follow(drivers, logger, (key, value) => {
        if (value === undefined) registry.#known.delete(key)
        else registry.#known.set(key, JSON.parse(value) as { name: string; resources: string[]; lastSeen: string })
      }),
    ])
    return registry
  }

  /** Applies the bucket's current entries, then every change, and resolves once the current ones are in. */
  async #follow(
    kv: KV,
    logger: Logger,
    apply: (key: string, value: string | undefined, time: number) => void,
  ): Promise<void> {
    const watch = await kv.watch()
    this.#stops.push(() => watch.stop())
    let ready: () => void = () => {}
    const loaded = new Promise<void>((resolve) => (ready = resolve))
    void (async () => {
      try {
        for await (const entry of watch) {
          const deleted = entry.operation === 'DEL' || entry.operation === 'PURGE'
          try {
            apply(entry.key, deleted ? undefined : entry.string(), entry.created.getTime())
          } catch {
            // an unreadable entry is ignored
          }
          if (entry.delta === 0) ready()
        }
      } catch (error) {
        logger.warn('watching the driver registry failed', { error: String(error) })
      }
    })()
    // An empty bucket never reports a last entry.
    const status = await kv.status()
    if (status.values === 0) ready()
    await loaded
  }

  #live(): DriverInstance[] {
    const cutoff = this.#now() - INSTANCE_TTL_MS
    return [...this.#instances.values()].filter((i) => i.seenAt >= cutoff).map((i) => i.info)
  }

  isLive(driver: string): boolean {
    return this.#live().some((i) => i.name === driver)
  }

  isKnown(driver: string): boolean {
    return this.#known.has(driver) || this.isLive(driver)
  }

  /** Drivers with a live instance that serve resources of `type`. */
  servingDrivers(type: string): string[] {
    return [
      ...new Set(
        this.#live()
          .filter((i) => i.resources.includes(type))
          .map((i) => i.name),
      ),
    ]
  }

  /** Every driver ever seen, with its live instances, by name. */
  list(): RegisteredDriver[] {
    const live = this.#live()
    const names = new Set([...this.#known.keys(), ...live.map((i) => i.name)])
    return [...names].sort().map((name) => {
      const instances = live.filter((i) => i.name === name)
      const known = this.#known.get(name)
      return {
        name,
        resources: instances[0]?.resources ?? known?.resources ?? [],
        lastSeen: known?.lastSeen ?? instances[0]?.started ?? '',
        instances,
      }
    })
  }

  close(): void {
    for (const stop of this.#stops) stop()
  }
}
