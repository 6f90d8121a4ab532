import type { Etcd3 } from 'etcd3'
import type { JetStreamManager } from '@nats-io/jetstream'
import { ConveyorError, invalid } from '../../runtime/errors.ts'
import { nameProblem } from '../../definitions/names.ts'
import { keys } from '../../runtime/keys.ts'
import { readKeys } from '../../runtime/etcd-ops.ts'
import { driverConsumers, driverInboxPrefix } from '../../runtime/driver-access.ts'
import { ensureDriverConsumer } from '../../runtime/driver-consumers.ts'
import { DriverIdentities } from '../../runtime/driver-identities.ts'
import { secretOf, type TokenStore } from '../../runtime/token-store.ts'
import { presentedToken } from '../auth.ts'
import { parseJson, requestObject } from '../http.ts'
import type { Router } from '../router.ts'

const FIELDS = new Set(['resources', 'ackWaitMs'])
const MAX_RESOURCES = 100
/** How long an identity may take to reach the NATS servers before the request is a 503. */
const APPLY_TIMEOUT_MS = 15_000

const forbidden = (detail: string): ConveyorError => new ConveyorError('forbidden', detail, { kind: 'forbidden' })

function parseRequest(body: Buffer): { resources: string[]; ackWaitMs: number } {
  const fields = requestObject(
    body.length === 0 ? {} : parseJson(body),
    FIELDS,
    'an identity request',
    '{resources?, ackWaitMs?}',
  )
  const resources = fields.resources ?? []
  if (!Array.isArray(resources) || resources.length > MAX_RESOURCES)
    throw invalid(`resources must be a list of at most ${MAX_RESOURCES} resource types`, [
      { path: '/resources', message: `must be at most ${MAX_RESOURCES} names` },
    ])
  resources.forEach((type: unknown, i) => {
    const problem = nameProblem(type)
    if (problem) throw invalid(`resources[${i}] ${problem}`, [{ path: `/resources/${i}`, message: problem }])
  })
  const ackWaitMs = fields.ackWaitMs ?? 30_000
  if (typeof ackWaitMs !== 'number' || !Number.isInteger(ackWaitMs) || ackWaitMs < 1000 || ackWaitMs > 3_600_000)
    throw invalid('ackWaitMs must be an integer from 1000 to 3600000', [
      { path: '/ackWaitMs', message: 'must be an integer from 1000 to 3600000' },
    ])
  return { resources: resources as string[], ackWaitMs }
}

/** Waits until the NATS servers' supervisor loaded `revision` (when one runs; external servers are the operator's to configure). */
async function untilApplied(etcd: Etcd3, revision: number): Promise<void> {
  const deadline = Date.now() + APPLY_TIMEOUT_MS
  for (;;) {
    const { values } = await readKeys(etcd, [keys.natsUsersApplied()])
    const applied = values[0]
    if (!applied || Number(applied.value) >= revision) return
    if (Date.now() > deadline)
      throw new ConveyorError(
        'identity-not-applied',
        'the NATS servers did not load the new identity in time; ask again shortly',
        { kind: 'unavailable' },
      )
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/**
 * `POST /drivers/:name/identity` with a `driver` token for that driver (or an admin token): makes
 * the driver's consumers for the types it serves (`{resources}`, within the token's types) and
 * answers its NATS user, password and inbox prefix, whose permissions reach only that driver's
 * consumers, requests, logs and registry entries. Asking again answers the same identity.
 */
export function registerDriverIdentityRoute(
  router: Router,
  deps: { readonly etcd: Etcd3; readonly jsm: JetStreamManager; readonly tokens: TokenStore },
): void {
  const identities = new DriverIdentities(deps.etcd)
  router.add('POST', '/drivers/:name/identity', async (request) => {
    const driver = request.params.name!
    const problem = nameProblem(driver)
    if (problem) throw invalid(`driver ${problem}`, [{ path: '/name', message: problem }])
    const principal = request.principal
    const token = presentedToken(request.headers)
    const info = token ? await deps.tokens.verify(token) : undefined
    if (!principal || !token || !info)
      throw new ConveyorError(
        'auth-off',
        'a driver identity is issued to a token: this gateway runs without auth, so drivers use the control plane credentials',
        { kind: 'conflict' },
      )
    if (principal.role === 'driver' && principal.driver !== driver)
      throw forbidden(`this token is for driver ${principal.driver ?? '(none)'}, not ${driver}`)
    const { resources, ackWaitMs } = parseRequest(request.body)
    const scope = { driver, types: principal.types }
    const specs = driverConsumers(scope, resources)
    if (typeof specs === 'string') throw forbidden(specs)
    for (const spec of specs) await ensureDriverConsumer(deps.jsm, driver, spec, ackWaitMs)
    const issued = await identities.issue({
      driver,
      types: principal.types,
      tokenId: info.id,
      secret: secretOf(token)!,
      expiresAt: info.expiresAt,
    })
    await untilApplied(deps.etcd, issued.revision)
    return {
      status: 200,
      body: {
        user: issued.user,
        password: issued.password,
        inboxPrefix: driverInboxPrefix(driver),
        ...(principal.types ? { types: principal.types } : {}),
        consumers: specs.map((spec) => spec.name),
        ...(info.expiresAt ? { expiresAt: info.expiresAt } : {}),
      },
      headers: { 'cache-control': 'no-store' },
    }
  })
}
