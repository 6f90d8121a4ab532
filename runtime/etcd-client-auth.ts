import { readFileSync } from 'node:fs'
import { EtcdAuthenticationFailedError, GRPCInvalidArgumentError, type IOptions } from 'etcd3'
import type { EtcdAuth } from './config.ts'

/** etcd3 client options that sign in with `auth` (a user and password, TLS verified against a CA). */
export function etcdClientAuth(auth: EtcdAuth | undefined): Pick<IOptions, 'auth' | 'credentials'> {
  return {
    ...(auth?.username ? { auth: { username: auth.username, password: auth.password ?? '' } } : {}),
    ...(auth?.caFile ? { credentials: { rootCertificate: readFileSync(auth.caFile) } } : {}),
  }
}

/** True when etcd refused the call for want of (valid) credentials. */
export const isEtcdAuthRefusal = (error: unknown): boolean =>
  error instanceof EtcdAuthenticationFailedError ||
  (error instanceof GRPCInvalidArgumentError && /user name is empty/.test(error.message))
