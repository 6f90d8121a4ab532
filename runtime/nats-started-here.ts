import type { NatsAuth } from './config.ts'

/** NATS credentials of the servers this process started, by client URL. */
const startedHere = new Map<string, NatsAuth>()

/** Records the NATS credentials of servers this process started (so an in-process driver given only a URL can sign in). */
export function rememberNatsCredentials(natsUrl: string, auth: NatsAuth): void {
  for (const url of natsUrl.split(',')) startedHere.set(url.trim(), auth)
}

export function forgetNatsCredentials(natsUrl: string): void {
  for (const url of natsUrl.split(',')) startedHere.delete(url.trim())
}

/** The credentials of a NATS server this process started, if `natsUrl` names one. */
export function natsCredentialsStartedHere(natsUrl: string): NatsAuth | undefined {
  for (const url of natsUrl.split(',')) {
    const auth = startedHere.get(url.trim())
    if (auth) return auth
  }
  return undefined
}
