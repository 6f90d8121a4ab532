import { createHmac } from 'node:crypto'
import type { Etcd3 } from 'etcd3'
import bcrypt from 'bcryptjs'
import { keys } from './keys.ts'
import { readKeys, readPrefix } from './etcd-ops.ts'
import { driverPermissions, type DriverScope } from './driver-access.ts'
import type { NatsUser } from './servers/nats-server.ts'

/** A driver identity as etcd keeps it: the NATS user, the bcrypt hash of its password, what it may reach. */
export interface DriverIdentityRecord {
  readonly user: string
  readonly passwordHash: string
  readonly driver: string
  /** Resource types it may serve; absent: every type. */
  readonly types?: readonly string[]
  /** The API token it was issued to: revoking the token removes it. */
  readonly tokenId: string
  /** The token's expiry, which the identity shares. */
  readonly expiresAt?: string
  readonly createdAt: string
}

/** What a driver gets: the NATS user and password, and its scope. */
export interface IssuedIdentity {
  readonly user: string
  readonly password: string
  /** The etcd revision that holds the identity (the NATS servers' supervisor reports the revision it loaded). */
  readonly revision: number
}

/** The identity's password, derived from the token's secret: only a holder of the token can know it, and asking again gives the same one. */
const passwordOf = (secret: string, driver: string): string =>
  createHmac('sha256', secret).update(`conveyor nats user ${driver}`).digest('base64url')

const isRecord = (value: unknown): value is DriverIdentityRecord => {
  const record = value as Partial<DriverIdentityRecord> | undefined
  return (
    typeof record?.user === 'string' && typeof record.passwordHash === 'string' && typeof record.driver === 'string'
  )
}

/**
 * Driver identities in etcd (`/conveyor/nats-users/{driver}/{tokenId}`): NATS users whose
 * permissions reach only their driver's consumers, requests, logs and registry entries. Whoever
 * supervises the NATS servers renders them into the servers' users (`syncNatsUsers`).
 */
export class DriverIdentities {
  readonly #etcd: Etcd3

  constructor(etcd: Etcd3) {
    this.#etcd = etcd
  }

  /** The identity of `driver` for the token `tokenId` (made on first use; the same afterwards). */
  async issue(request: {
    readonly driver: string
    readonly types?: readonly string[] | undefined
    readonly tokenId: string
    readonly secret: string
    readonly expiresAt?: string | undefined
  }): Promise<IssuedIdentity> {
    const key = keys.natsUser(request.driver, request.tokenId)
    const password = passwordOf(request.secret, request.driver)
    const { values } = await readKeys(this.#etcd, [key])
    const existing = values[0]
    if (existing) {
      const stored: unknown = JSON.parse(existing.value)
      if (isRecord(stored) && (await bcrypt.compare(password, stored.passwordHash)))
        return { user: stored.user, password, revision: existing.modRevision }
    }
    const record: DriverIdentityRecord = {
      user: `driver-${request.driver}-${request.tokenId}`,
      passwordHash: await bcrypt.hash(password, 10),
      driver: request.driver,
      ...(request.types ? { types: request.types } : {}),
      tokenId: request.tokenId,
      ...(request.expiresAt ? { expiresAt: request.expiresAt } : {}),
      createdAt: new Date().toISOString(),
    }
    const put = await this.#etcd.put(key).value(JSON.stringify(record)).exec()
    return { user: record.user, password, revision: Number(put.header.revision) }
  }

  /** Every identity, and the etcd revision they were read at. */
  async list(): Promise<{ records: DriverIdentityRecord[]; revision: number }> {
    const { values, revision } = await readPrefix(this.#etcd, keys.natsUsers())
    const records = values.map((value) => JSON.parse(value.value) as unknown).filter(isRecord)
    return { records, revision }
  }

  /** Removes every identity issued to a token (when it is revoked). */
  async revokeToken(tokenId: string): Promise<number> {
    const { records } = await this.list()
    let removed = 0
    for (const record of records.filter((r) => r.tokenId === tokenId)) {
      await this.#etcd.delete().key(keys.natsUser(record.driver, record.tokenId)).exec()
      removed++
    }
    return removed
  }
}

/** The NATS user an identity record becomes: its bcrypt hash (nats-server checks it) and its driver's permissions. */
export function natsUserOf(record: DriverIdentityRecord): NatsUser {
  const scope: DriverScope = { driver: record.driver, types: record.types }
  return { user: record.user, password: record.passwordHash, permissions: driverPermissions(scope) }
}
