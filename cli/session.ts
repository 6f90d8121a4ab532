import { ApiError, UnreachableError } from '../client/errors.ts'
import { createClient, type ConveyorClient } from '../client/client.ts'
import { Transport } from '../client/transport.ts'
import { resolveTarget, type Target, type TargetFlags } from './contexts.ts'

/** A client command's connection to its gateway. */
export interface Session {
  readonly client: ConveyorClient
  readonly transport: Transport
  readonly target: Target
}

/** The target of the last session opened, for explaining its errors. */
let lastTarget: Target | undefined

export function openSession(flags: TargetFlags): Session {
  const target = resolveTarget(flags)
  lastTarget = target
  const options = { url: target.url, token: target.token }
  return { client: createClient(options), transport: new Transport(options), target }
}

/**
 * One line that says what went wrong and what fixes it: a refusal names its status and fields,
 * a 401 says where the token came from, an unreachable gateway says how to point at another.
 */
export function explain(error: unknown, target: Target | undefined = lastTarget): string | undefined {
  if (error instanceof UnreachableError)
    return `${error.message} (start one with conveyor up, or set --api, CONVEYOR_API_URL or a context)`
  if (!(error instanceof ApiError)) return undefined
  if (error.status === 401)
    return `${error.message} (${
      target?.token
        ? `the token from ${target.tokenSource} is not valid at ${target.url}: make one with conveyor token create`
        : 'no token: set CONVEYOR_TOKEN or --token, add a context with conveyor config set-context, or run this where conveyor up keeps .conveyor/admin.token'
    })`
  if (error.status === 403) return `${error.message} (the token's role or types do not allow this)`
  const accepts = error.problem?.accepts
  if (Array.isArray(accepts))
    return `${error.message} (it accepts now: ${accepts.length > 0 ? accepts.join(', ') : 'nothing'})`
  return error.message
}
