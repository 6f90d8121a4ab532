import { ConveyorError } from '../../runtime/errors.ts'

/** How a driver gets its own NATS identity: from the gateway, with a `driver` token. */
export interface DriverIdentitySource {
  /** The gateway's URL (env `CONVEYOR_API_URL`). */
  readonly apiUrl: string
  /** A token of role `driver` for this driver (env `CONVEYOR_DRIVER_TOKEN`). */
  readonly token: string
}

/** What the gateway answers `POST /drivers/{name}/identity`. */
export interface DriverIdentity {
  readonly user: string
  readonly password: string
  /** Replies to the driver's requests come on subjects under this prefix (all its permissions allow). */
  readonly inboxPrefix: string
  /** The resource types the identity may serve; absent: every type. */
  readonly types?: readonly string[]
  /** The consumers the gateway made for it. */
  readonly consumers: readonly string[]
}

/** Asks the gateway for the driver's NATS identity (and its consumers, made for the types it serves). Fails with one line naming the cause. */
export async function fetchDriverIdentity(
  source: DriverIdentitySource,
  driver: string,
  request: { readonly resources: readonly string[]; readonly ackWaitMs: number },
): Promise<DriverIdentity> {
  const url = `${source.apiUrl.replace(/\/+$/, '')}/drivers/${encodeURIComponent(driver)}/identity`
  let response: Response
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${source.token}` },
      body: JSON.stringify(request),
      signal: AbortSignal.timeout(30_000),
    })
  } catch (error) {
    throw new ConveyorError('gateway-unreachable', `cannot reach the Conveyor API at ${url}: ${String(error)}`, {
      kind: 'unavailable',
      cause: error,
    })
  }
  const body = (await response.json().catch(() => ({}))) as Partial<DriverIdentity> & { detail?: string }
  if (!response.ok || typeof body.user !== 'string' || typeof body.password !== 'string')
    throw new ConveyorError(
      'driver-identity-refused',
      `the gateway refused driver ${driver} a NATS identity (${response.status}): ${body.detail ?? 'no detail'}`,
      { kind: response.status === 401 ? 'unauthorized' : response.status === 403 ? 'forbidden' : 'unavailable' },
    )
  return body as DriverIdentity
}
