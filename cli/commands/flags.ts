import type { ConfigOverrides } from '../../runtime/config.ts'

export interface ServeFlags extends ConfigOverrides {
  readonly natsPort?: string | undefined
  readonly etcdPort?: string | undefined
}
