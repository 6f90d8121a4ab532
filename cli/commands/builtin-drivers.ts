import { shellDriver } from '../../actors/driver/builtin/shell.ts'
import type { DriverDefinition } from '../../actors/driver/types.ts'

/** Drivers that ship with Conveyor: `conveyor up` runs them, `conveyor driver NAME` runs one. */
export const BUILT_IN_DRIVERS: Readonly<Record<string, DriverDefinition>> = { shell: shellDriver }
